//! The principal of a TLS client: its certificate subject as an RFC 2253 distinguished name
//! (the form Java's `X500Principal.getName()` gives Kafka), passed through
//! `ssl.principal.mapping.rules`.
//!
//! Rules use Kafka's syntax: `RULE:pattern/replacement/[LU]` entries and `DEFAULT`, separated
//! by commas, tried in order; the first whose pattern matches the whole name wins, and `DEFAULT`
//! keeps the name as it is. When no rule matches, the name is kept too (Kafka fails the
//! connection instead; keeping it is the safer reading for a broker without an authorizer yet,
//! and is logged). Patterns are Rust regular expressions, which accept the usual Java ones
//! except for look-around and back-references.

use anyhow::{bail, Context, Result};
use regex::Regex;

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace { pattern: Regex, replacement: String, case: Option<char> },
}

#[derive(Debug, Clone)]
pub struct PrincipalMappingRules {
    rules: Vec<Rule>,
}

impl PrincipalMappingRules {
    pub fn parse(text: &str) -> Result<PrincipalMappingRules> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = split_unescaped_slash(after).context("RULE: needs pattern/replacement/")?;
                let (replacement, after) = split_unescaped_slash(after).context("RULE: needs pattern/replacement/")?;
                let (case, after) = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                    _ => (None, after),
                };
                let anchored = format!("^(?:{})$", pattern.replace("\\/", "/"));
                let pattern = Regex::new(&anchored).with_context(|| format!("bad pattern {pattern:?}"))?;
                rules.push(Rule::Replace { pattern, replacement: java_replacement(&replacement.replace("\\/", "/")), case });
                rest = after;
            } else {
                bail!("expected RULE:pattern/replacement/[LU] or DEFAULT at {rest:?}");
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => bail!("expected a comma between rules at {rest:?}"),
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalMappingRules { rules })
    }

    /// The user name for a subject name.
    pub fn apply(&self, name: &str) -> String {
        for rule in &self.rules {
            match rule {
                Rule::Default => return name.to_string(),
                Rule::Replace { pattern, replacement, case } => {
                    if pattern.is_match(name) {
                        let mapped = pattern.replace(name, replacement.as_str()).into_owned();
                        return match case {
                            Some('L') => mapped.to_lowercase(),
                            Some('U') => mapped.to_uppercase(),
                            _ => mapped,
                        };
                    }
                }
            }
        }
        tracing::warn!(subject = name, "no ssl.principal.mapping.rules entry matches this certificate subject; using it unchanged");
        name.to_string()
    }
}

/// Splits at the first `/` not preceded by a backslash.
fn split_unescaped_slash(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'/' => return Some((&text[..i], &text[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// Java writes group references as `$1`; the regex crate would read `$1abc` as a group named
/// `1abc`, so each `$<digits>` becomes `${<digits>}`.
fn java_replacement(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push_str("${");
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                out.push(d);
                chars.next();
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

/// The subject of a DER certificate as RFC 2253 writes it: the last RDN first, `,` between
/// RDNs, `+` inside a multi-valued one, and the well-known attribute names.
pub fn subject_name(certificate_der: &[u8]) -> Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate_der).map_err(|e| anyhow::anyhow!("client certificate does not parse: {e}"))?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let value = match attr.as_str() {
                        Ok(s) => escape_rfc2253(s),
                        Err(_) => format!("#{}", hex(attr.as_slice())),
                    };
                    format!("{}={value}", attribute_name(&oid).unwrap_or(&oid))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Ok(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The names RFC 2253 (and Java) use for these attribute types.
fn attribute_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || (i == 0 && (c == '#' || c == ' ')) || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_rules() {
        let rules = PrincipalMappingRules::parse("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, DEFAULT").unwrap();
        assert_eq!(rules.apply("CN=kafka-svc,OU=ServiceUsers,O=Unknown"), "kafka-svc");
        assert_eq!(rules.apply("CN=Adam,OU=Eng,O=Org"), "adam@eng");
        assert_eq!(rules.apply("CN=plain"), "CN=plain");
        let upper = PrincipalMappingRules::parse("RULE:^CN=([^,]*).*$/$1x/U").unwrap();
        assert_eq!(upper.apply("CN=bob,O=x"), "BOBX");
        // No rule matches: the name is kept.
        assert_eq!(upper.apply("O=x"), "O=x");
        assert!(PrincipalMappingRules::parse("RULE:nope").is_err());
        assert!(PrincipalMappingRules::parse("DEFAULT RULE:a/b/").is_err());
        assert!(PrincipalMappingRules::parse("RULE:(/x/").is_err());
    }

    #[test]
    fn escaped_slashes_and_empty_rules() {
        let rules = PrincipalMappingRules::parse("RULE:^CN=(.*)\\/x$/$1/").unwrap();
        assert_eq!(rules.apply("CN=a/x"), "a");
        assert_eq!(PrincipalMappingRules::parse("").unwrap().apply("CN=z"), "CN=z");
    }

    #[test]
    fn rfc2253_escaping() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("#1"), "\\#1");
    }
}
