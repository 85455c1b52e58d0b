//! The machine's memory before the first broker starts.
//!
//! Some virtual machines hand memory the guest has freed back to their
//! hypervisor (virtio-balloon free page reporting); the next write to such a page
//! costs a fault in the hypervisor as well as the guest's own. A broker that
//! writes its log through the page cache takes fresh pages for everything it
//! stores, so on such a machine it pays that fault per page while the null broker,
//! which stores nothing, never does; a long-running host, whose page cache is
//! full and recycles its pages, does not pay it either. So the harness turns the
//! reporting down for the run where the kernel lets it, touches the memory the
//! runs will use once, measures what that cost, and puts the settings back.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

const DIR: &str = "/sys/module/page_reporting/parameters";
const GIB: u64 = 1 << 30;

/// Settings changed for the run (restored on drop) and what touching memory cost.
pub(crate) struct Prepared {
    restore: Vec<(&'static str, String)>,
    set: Vec<(&'static str, String)>,
    reporting: bool,
    touched_gib: u64,
    first_s: f64,
    again_s_per_gib: f64,
}

/// Writes `value` to a page-reporting parameter; the first of `values` the kernel takes.
fn set_first(name: &'static str, values: &[&str]) -> Option<String> {
    let path = format!("{DIR}/{name}");
    values.iter().find(|v| std::fs::write(&path, v).is_ok()).map(|v| v.to_string())
}

fn available() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib =
        text.lines().find_map(|l| l.strip_prefix("MemAvailable:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

/// Seconds to allocate and write `n` GiB, one GiB at a time, kept until all are written.
fn touch(n: u64) -> f64 {
    let t = Instant::now();
    let chunks: Vec<Vec<u8>> = (0..n).map(|_| black_box(vec![1u8; GIB as usize])).collect();
    black_box(&chunks);
    drop(chunks);
    t.elapsed().as_secs_f64()
}

/// Turns free page reporting down (where present and writable) and touches up to
/// `want` bytes, leaving 3 GiB of the available memory alone.
pub(crate) fn prepare(want: u64) -> Prepared {
    let mut p = Prepared { restore: Vec::new(), set: Vec::new(), reporting: false, touched_gib: 0, first_s: 0.0, again_s_per_gib: 0.0 };
    if std::path::Path::new(DIR).is_dir() {
        p.reporting = true;
        // Longest wait before a free page is reported, largest free memory held back,
        // largest blocks reported: the most each kernel takes (it refuses more).
        for (name, values) in [
            ("min_free_ms", &["300000", "200000", "100000", "60000"][..]),
            ("max_waiting_mib", &["65536", "16384"][..]),
            ("page_reporting_order", &["11", "10"][..]),
        ] {
            let Ok(old) = std::fs::read_to_string(format!("{DIR}/{name}")) else { continue };
            if let Some(v) = set_first(name, values) {
                p.restore.push((name, old.trim().to_string()));
                p.set.push((name, v));
            }
        }
    }
    let n = want.min(available().saturating_sub(3 * GIB)) / GIB;
    if n > 0 {
        eprintln!("[harness] touching {n} GiB of memory before the first broker");
        p.first_s = touch(n);
        p.again_s_per_gib = touch(1);
        p.touched_gib = n;
        eprintln!("[harness]   {:.1} s ({:.2} s/GiB; again: {:.2} s/GiB)", p.first_s, p.first_s / n as f64, p.again_s_per_gib);
    }
    p
}

impl Prepared {
    /// A paragraph for the report.
    pub(crate) fn note(&self) -> String {
        let mut s = String::from("Memory: ");
        let per = if self.touched_gib > 0 { self.first_s / self.touched_gib as f64 } else { 0.0 };
        if self.reporting {
            s.push_str(
                "this machine is a virtual machine that returns memory the guest frees to its hypervisor (free page reporting), \
                 so the first write to such a page costs a fault in the hypervisor too. A broker that stores data takes new pages \
                 for all of it and pays that per page, while the null broker stores nothing, and a long-running host whose page \
                 cache is full recycles its pages. ",
            );
            if self.set.is_empty() {
                s.push_str(
                    "The harness could not change the reporting (not permitted), so the brokers that store data paid it in this run. ",
                );
            } else {
                let set: Vec<String> = self.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(s, "For this run the harness set {} in `{DIR}` (restored afterwards) ", set.join(", "));
                s.push_str("and wrote the memory the runs use once before the first broker. ");
            }
        } else {
            s.push_str("the harness wrote the memory the runs use once before the first broker. ");
        }
        if self.touched_gib > 0 {
            let _ = writeln!(
                s,
                "Writing {} GiB for the first time took {:.1} s ({:.2} s/GiB); writing 1 GiB again afterwards took {:.2} s.",
                self.touched_gib, self.first_s, per, self.again_s_per_gib
            );
        } else {
            s.push_str("There was no memory to spare for it.\n");
        }
        s
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for (name, old) in &self.restore {
            if let Err(e) = std::fs::write(format!("{DIR}/{name}"), old) {
                eprintln!("[harness] could not restore {DIR}/{name} to {old}: {e}");
            }
        }
    }
}
