//! What the machine was doing while a benchmark ran: peak memory, load average, the CPU share other processes
//! took, the processor model. On a shared machine a throughput number means little without these.

use serde::Serialize;
use std::time::{Duration, Instant};

/// The process's peak resident set size in bytes (`VmHWM` of /proc/self/status); `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmHWM:   123456 kB` → bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// The 1-, 5- and 15-minute load averages (/proc/loadavg); `None` off Linux.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The processor's model name (`model name` of /proc/cpuinfo), or the architecture when unknown.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Logical cores the OS reports (what the foreign share is a fraction of).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Busy CPU seconds of the whole machine so far: every /proc/stat jiffy except idle and iowait.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((fields.iter().sum::<u64>() - idle) as f64 / hz)
}

/// CPU seconds (user + system, all threads) this process has used so far.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// A measured section: wall time, this process's CPU time, and the CPU other processes used meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuShare {
    /// Wall seconds of the section.
    pub wall_seconds: f64,
    /// CPU seconds this process used (all threads).
    pub own_cpu_seconds: f64,
    /// CPU used by other processes ÷ (wall × cores); above ~0.05 the section's timing was disturbed.
    /// `None` where /proc/stat cannot be read.
    pub foreign_cpu_share: Option<f64>,
}

/// Start of a section measured as [`CpuShare`] (the same method as the PyTorch reference script).
pub struct CpuMeter {
    wall: Instant,
    busy: Option<f64>,
    own: f64,
}

impl CpuMeter {
    /// Start measuring now.
    pub fn start() -> Self {
        CpuMeter {
            wall: Instant::now(),
            busy: machine_busy_seconds(),
            own: own_cpu_seconds(),
        }
    }

    /// The section from `start` until now.
    pub fn stop(&self) -> CpuShare {
        let wall = self.wall.elapsed().as_secs_f64();
        let own = own_cpu_seconds() - self.own;
        let foreign = match (self.busy, machine_busy_seconds()) {
            (Some(a), Some(b)) if wall > 0.0 => Some(((b - a) - own).max(0.0) / (wall * cores() as f64)),
            _ => None,
        };
        CpuShare {
            wall_seconds: wall,
            own_cpu_seconds: own,
            foreign_cpu_share: foreign,
        }
    }
}

/// Wait until other processes use less than `threshold` of the machine over a 3 s window, for at most
/// `max_wait`. Returns the last window's foreign share and the seconds waited.
pub fn wait_quiet(max_wait: Duration, threshold: f64) -> (Option<f64>, f64) {
    let started = Instant::now();
    loop {
        let meter = CpuMeter::start();
        std::thread::sleep(Duration::from_secs(3).min(max_wait.max(Duration::from_millis(200))));
        let share = meter.stop().foreign_cpu_share;
        let quiet = share.is_none_or(|s| s < threshold);
        if quiet || started.elapsed() >= max_wait {
            return (share, started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm_in_bytes() {
        let status = "Name:\tlabpipe\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn reads_load_average() {
        assert_eq!(
            parse_loadavg("2.74 5.40 6.33 4/119 27701\n"),
            Some([2.74, 5.40, 6.33])
        );
        assert_eq!(parse_loadavg("garbage"), None);
    }

    #[test]
    fn own_process_is_measured() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 0));
            assert!(load_average().is_some());
        }
        let meter = CpuMeter::start();
        // Burn a little CPU so the process's own time is visibly positive.
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let s = meter.stop();
        assert!(s.wall_seconds > 0.0 && s.own_cpu_seconds >= 0.0);
        if let Some(f) = s.foreign_cpu_share {
            assert!(f >= 0.0, "{f}");
        }
    }
}
