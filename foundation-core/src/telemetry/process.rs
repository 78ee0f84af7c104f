//! The standard `process_*` metrics (as Prometheus' own client libraries export them), read
//! from `/proc/self` at each scrape: CPU seconds, resident and virtual memory, open and allowed
//! file descriptors, start time. On a system without `/proc` nothing is rendered.
//!
//! Clock ticks are taken as 100 per second, the fixed `USER_HZ` of Linux's user-space ABI on
//! every architecture Rust supports but Alpha (Prometheus' `procfs` assumes the same).

use std::fmt::Write;

const USER_HZ: f64 = 100.0;

/// One reading of this process.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProcessReading {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) open_fds: u64,
    pub(crate) max_fds: Option<u64>,
    pub(crate) start_time_seconds: f64,
}

/// Reads this process, or `None` where `/proc` is missing or unreadable.
pub(crate) fn read() -> Option<ProcessReading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    parse(&stat, &status, &boot, &limits, open_fds)
}

/// The reading from the files' text (split out so that it is tested on fixed input).
pub(crate) fn parse(
    stat: &str,
    status: &str,
    boot: &str,
    limits: &str,
    open_fds: u64,
) -> Option<ProcessReading> {
    // The command name (field 2) is in parentheses and may hold spaces: fields count from after
    // its closing one, where field 3 (state) is the first.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    let btime =
        boot.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok())?;
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<u64>().ok());
    Some(ProcessReading {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        resident_bytes: kib("VmRSS:").unwrap_or(0),
        virtual_bytes: kib("VmSize:").unwrap_or(0),
        open_fds,
        max_fds,
        start_time_seconds: btime as f64 + start_ticks as f64 / USER_HZ,
    })
}

/// Appends the `process_*` families to an exposition.
pub(crate) fn render(out: &mut String, reading: &ProcessReading) {
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n");
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        reading.cpu_seconds,
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        reading.resident_bytes as f64,
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        reading.virtual_bytes as f64,
    );
    family("process_open_fds", "gauge", "Number of open file descriptors.", reading.open_fds as f64);
    if let Some(max) = reading.max_fds {
        family("process_max_fds", "gauge", "Maximum number of open file descriptors.", max as f64);
    }
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        reading.start_time_seconds,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_parsed_from_the_proc_files_even_with_a_spaced_command_name() {
        // field 14 utime = 250, 15 stime = 50, 22 starttime = 1000 ticks after boot
        let stat = "4242 (my node (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 123 456";
        let status = "Name:\tnode\nVmSize:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let reading = parse(stat, status, boot, limits, 7).expect("parsed");
        assert_eq!(
            reading,
            ProcessReading {
                cpu_seconds: 3.0,
                resident_bytes: 1024 * 1024,
                virtual_bytes: 2048 * 1024,
                open_fds: 7,
                max_fds: Some(1024),
                start_time_seconds: 1_700_000_010.0,
            }
        );
        assert_eq!(parse("garbage", status, boot, limits, 0), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_with_open_descriptors_and_a_start_in_the_past() {
        let reading = read().expect("/proc is there on Linux");
        assert!(reading.open_fds >= 3 && reading.resident_bytes > 0, "{reading:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(reading.start_time_seconds > 1.0e9 && reading.start_time_seconds <= now + 1.0, "{reading:?}");
    }
}
