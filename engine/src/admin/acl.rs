//! `shardlog acl add|list|remove`: Kafka ACLs, as `kafka-acls.sh` manages them, through
//! CreateAcls, DescribeAcls and DeleteAcls.

use std::io::Write;

use anyhow::{bail, Result};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::error_code::error_name;
use shardlog_protocol::kafka_protocol;

use super::group::ConnectionArgs;
use super::table::{self, printable};
use crate::authorizer::{Operation, PatternType, Permission, ResourceType, ANY, PATTERN_MATCH};

pub const LIST_HEADER: &[&str] = &["RESOURCE-TYPE", "RESOURCE-NAME", "PATTERN-TYPE", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"];

#[derive(clap::Args, Debug, Clone)]
pub struct ResourceArgs {
    /// A topic name (or prefix, with --resource-pattern-type prefixed; `*` for every topic).
    #[arg(long, group = "resource")]
    pub topic: Option<String>,
    /// A consumer group id (or prefix).
    #[arg(long, group = "resource")]
    pub group: Option<String>,
    /// A transactional id (or prefix).
    #[arg(long, group = "resource")]
    pub transactional_id: Option<String>,
    /// The cluster resource (kafka-cluster).
    #[arg(long, group = "resource")]
    pub cluster: bool,
    /// literal or prefixed (for list and remove also: any, match).
    #[arg(long, default_value = "literal")]
    pub resource_pattern_type: String,
}

impl ResourceArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        match (&self.topic, &self.group, &self.transactional_id, self.cluster) {
            (Some(t), ..) => Some((ResourceType::Topic, t.clone())),
            (_, Some(g), ..) => Some((ResourceType::Group, g.clone())),
            (_, _, Some(x), _) => Some((ResourceType::TransactionalId, x.clone())),
            (.., true) => Some((ResourceType::Cluster, String::from("kafka-cluster"))),
            _ => None,
        }
    }

    fn pattern_type(&self) -> Result<i8> {
        Ok(match self.resource_pattern_type.to_ascii_lowercase().as_str() {
            "literal" => PatternType::Literal as i8,
            "prefixed" => PatternType::Prefixed as i8,
            "any" => ANY,
            "match" => PATTERN_MATCH,
            other => bail!("--resource-pattern-type {other:?}: use literal, prefixed, any or match"),
        })
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BindingArgs {
    /// Principals to allow, such as User:alice (repeatable).
    #[arg(long)]
    pub allow_principal: Vec<String>,
    /// Principals to deny (repeatable).
    #[arg(long)]
    pub deny_principal: Vec<String>,
    /// Operations: Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite, All (repeatable).
    #[arg(long)]
    pub operation: Vec<String>,
    /// The client host the ACL applies to; `*` for any.
    #[arg(long, default_value = "*")]
    pub host: String,
    #[command(flatten)]
    pub resource: ResourceArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Add ACLs: each principal gets each operation on the resource.
    Add {
        #[command(flatten)]
        binding: BindingArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// List ACLs, optionally only those on a resource or of a principal.
    List {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only the ACLs of this principal.
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Remove ACLs: those of the given principals and operations on the resource.
    Remove {
        #[command(flatten)]
        binding: BindingArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

fn operations(names: &[String]) -> Result<Vec<Operation>> {
    if names.is_empty() {
        bail!("give at least one --operation (Read, Write, Describe, All, ...)");
    }
    names.iter().map(|n| Operation::parse(n).ok_or_else(|| anyhow::anyhow!("unknown operation {n:?}"))).collect()
}

fn principals(b: &BindingArgs) -> Result<Vec<(String, Permission)>> {
    let out: Vec<(String, Permission)> =
        b.allow_principal.iter().map(|p| (p.clone(), Permission::Allow)).chain(b.deny_principal.iter().map(|p| (p.clone(), Permission::Deny))).collect();
    if out.is_empty() {
        bail!("give --allow-principal or --deny-principal (such as User:alice)");
    }
    Ok(out)
}

pub fn run(command: AclCommand, out: &mut dyn Write) -> Result<i32> {
    match command {
        AclCommand::Add { binding, connection } => {
            let Some((resource_type, name)) = binding.resource.resource() else { bail!("name a resource: --topic, --group, --transactional-id or --cluster") };
            let pattern = binding.resource.pattern_type()?;
            let mut request = CreateAclsRequest::default();
            for (principal, permission) in principals(&binding)? {
                for operation in operations(&binding.operation)? {
                    let mut c = AclCreation::default();
                    c.resource_type = resource_type as i8;
                    c.resource_name = StrBytes::from_string(name.clone());
                    c.resource_pattern_type = pattern;
                    c.principal = StrBytes::from_string(principal.clone());
                    c.host = StrBytes::from_string(binding.host.clone());
                    c.operation = operation as i8;
                    c.permission_type = permission as i8;
                    request.creations.push(c);
                }
            }
            let mut client = connection.connect()?;
            let version = client.version(ApiKey::CreateAcls)?;
            let response = client.send(&request, version)?;
            let mut failed = 0;
            for (c, r) in request.creations.iter().zip(&response.results) {
                if r.error_code != 0 {
                    failed += 1;
                    let why = r.error_message.as_deref().unwrap_or_default();
                    writeln!(
                        out,
                        "not added: {} {} on {}: {} {why}",
                        c.principal.as_str(),
                        Operation::from_id(c.operation).map_or("?", |o| o.name()),
                        name,
                        error_name(r.error_code)
                    )?;
                }
            }
            writeln!(out, "added {} ACL(s)", request.creations.len() - failed)?;
            Ok(i32::from(failed > 0))
        }
        AclCommand::List { resource, principal, connection } => {
            let (resource_type, name) = resource.resource().map_or((ANY, None), |(t, n)| (t as i8, Some(n)));
            let mut request = DescribeAclsRequest::default();
            request.resource_type_filter = resource_type;
            request.resource_name_filter = name.map(StrBytes::from_string);
            request.pattern_type_filter = if resource.resource().is_some() { resource.pattern_type()? } else { ANY };
            request.principal_filter = principal.map(StrBytes::from_string);
            request.host_filter = None; // the crate's default is Some(""), which matches no ACL
            request.operation = ANY;
            request.permission_type = ANY;
            let mut client = connection.connect()?;
            let version = client.version(ApiKey::DescribeAcls)?;
            let response = client.send(&request, version)?;
            if response.error_code != 0 {
                bail!("the broker refused to describe ACLs: {} {}", error_name(response.error_code), response.error_message.as_deref().unwrap_or_default());
            }
            let mut rows = Vec::new();
            for res in &response.resources {
                for a in &res.acls {
                    rows.push(vec![
                        ResourceType::from_id(res.resource_type).map_or("?", |t| t.name()).to_string(),
                        printable(&res.resource_name),
                        PatternType::from_id(res.pattern_type).map_or("?", |p| p.name()).to_string(),
                        printable(&a.principal),
                        printable(&a.host),
                        Operation::from_id(a.operation).map_or("?", |o| o.name()).to_string(),
                        Permission::from_id(a.permission_type).map_or("?", |p| p.name()).to_string(),
                    ]);
                }
            }
            out.write_all(table::render(LIST_HEADER, &rows).as_bytes())?;
            Ok(0)
        }
        AclCommand::Remove { binding, connection } => {
            let Some((resource_type, name)) = binding.resource.resource() else { bail!("name a resource: --topic, --group, --transactional-id or --cluster") };
            let pattern = binding.resource.pattern_type()?;
            let mut request = DeleteAclsRequest::default();
            for (principal, permission) in principals(&binding)? {
                for operation in operations(&binding.operation)? {
                    let mut f = DeleteAclsFilter::default();
                    f.resource_type_filter = resource_type as i8;
                    f.resource_name_filter = Some(StrBytes::from_string(name.clone()));
                    f.pattern_type_filter = pattern;
                    f.principal_filter = Some(StrBytes::from_string(principal.clone()));
                    f.host_filter = Some(StrBytes::from_string(binding.host.clone()));
                    f.operation = operation as i8;
                    f.permission_type = permission as i8;
                    request.filters.push(f);
                }
            }
            let mut client = connection.connect()?;
            let version = client.version(ApiKey::DeleteAcls)?;
            let response = client.send(&request, version)?;
            let mut removed = 0;
            for r in &response.filter_results {
                if r.error_code != 0 {
                    bail!("the broker refused to remove ACLs: {} {}", error_name(r.error_code), r.error_message.as_deref().unwrap_or_default());
                }
                removed += r.matching_acls.len();
            }
            writeln!(out, "removed {removed} ACL(s)")?;
            Ok(0)
        }
    }
}
