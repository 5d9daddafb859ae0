//! The kernel's CPU list syntax, as in `/sys/devices/system/cpu/online`, `smp_affinity_list` and
//! `--cores`: `0-3,8,10-11`.

use anyhow::{bail, Context, Result};

/// Highest CPU number accepted: the kernel's own NR_CPUS maximum is 8192.
pub const CPU_ID_MAX: usize = 8191;

/// Parses `0-3,8` into sorted, distinct CPU numbers. An empty or blank list is empty.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (parse_cpu(a, part)?, parse_cpu(b, part)?),
            None => {
                let cpu = parse_cpu(part, part)?;
                (cpu, cpu)
            }
        };
        if first > last {
            bail!("CPU range {part:?} runs backwards");
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn parse_cpu(text: &str, part: &str) -> Result<usize> {
    let cpu: usize = text.trim().parse().with_context(|| format!("bad CPU number in {part:?}"))?;
    if cpu > CPU_ID_MAX {
        bail!("CPU {cpu} in {part:?} is above the kernel's limit of {CPU_ID_MAX}");
    }
    Ok(cpu)
}

/// Formats CPU numbers in the kernel's syntax, folding runs into ranges: `[0,1,2,3,8]` is `0-3,8`.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(" 5 , 1-2 ,1").unwrap(), vec![1, 2, 5]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn refuses_bad_lists() {
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("0-99999999").is_err());
        assert!(parse_cpu_list("1-").is_err());
    }

    #[test]
    fn formats_with_ranges() {
        assert_eq!(format_cpu_list(&[8, 0, 1, 2, 3]), "0-3,8");
        assert_eq!(format_cpu_list(&[0, 2, 4]), "0,2,4");
        assert_eq!(format_cpu_list(&[1, 2]), "1-2");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn round_trips() {
        for text in ["0", "0-15", "1-3,5-7,9-11,13-15", "0,4,8,12"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(text).unwrap()), text);
        }
    }
}
