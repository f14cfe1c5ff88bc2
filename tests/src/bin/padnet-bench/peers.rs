//! direct, shadowsocks-rust and padnet side by side: the same origin, the same
//! clients, runs interleaved (each round: direct, then ss, then padnet), and
//! the CPU of each peer's two proxy processes read around its own runs only.

use std::net::SocketAddr;

use crate::{cpu_secs, median};

/// One way to reach the origin.
pub struct Peer {
    pub name: &'static str,
    /// The HTTP proxy to use; `None`: straight to the origin.
    pub proxy: Option<SocketAddr>,
    /// The proxy's processes (name, pid), whose CPU is counted.
    pub procs: Vec<(&'static str, u32)>,
}

/// One measure's runs for one peer: the values, and CPU seconds each of the
/// peer's processes spent during those runs.
pub struct Runs<T> {
    pub values: Vec<T>,
    pub cpu: Vec<f64>,
}

impl<T> Runs<T> {
    pub fn cpu_total(&self) -> f64 {
        self.cpu.iter().sum()
    }
}

/// `runs` rounds; in each, `f` once per peer in order. `f` returns `None` to
/// skip a run (it says why itself).
pub fn interleaved<T>(
    peers: &[Peer],
    runs: usize,
    mut f: impl FnMut(&Peer) -> Option<T>,
) -> Vec<Runs<T>> {
    let mut out: Vec<Runs<T>> = peers
        .iter()
        .map(|p| Runs {
            values: Vec::new(),
            cpu: vec![0.0; p.procs.len()],
        })
        .collect();
    for _ in 0..runs {
        for (p, o) in peers.iter().zip(out.iter_mut()) {
            let before: Vec<f64> = p.procs.iter().map(|&(_, pid)| cpu_secs(pid)).collect();
            let v = f(p);
            for (i, &(_, pid)) in p.procs.iter().enumerate() {
                o.cpu[i] += cpu_secs(pid) - before[i];
            }
            if let Some(v) = v {
                o.values.push(v);
            }
        }
    }
    out
}

/// The median of each peer's values after `pick`; `None` where a peer has none.
pub fn medians<T>(runs: &[Runs<T>], pick: impl Fn(&T) -> f64) -> Vec<Option<f64>> {
    runs.iter()
        .map(|r| (!r.values.is_empty()).then(|| median(r.values.iter().map(&pick).collect())))
        .collect()
}

/// A table of figures, one column per peer, then the ratios padnet ÷ direct,
/// ss ÷ direct and padnet ÷ ss; printed at the end.
pub struct Table {
    names: Vec<&'static str>,
    rows: Vec<(String, Vec<Option<f64>>, usize)>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(peers: &[Peer]) -> Table {
        Table {
            names: peers.iter().map(|p| p.name).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A row: `values` per peer (`None`: not measured), shown with `decimals`.
    pub fn row(&mut self, label: &str, values: Vec<Option<f64>>, decimals: usize) {
        self.rows.push((label.to_string(), values, decimals));
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn col(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }

    pub fn print(&self) {
        let w = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut head = format!("  {:w$}", "");
        for n in &self.names {
            head += &format!(" {n:>13}");
        }
        let ratios = [
            ("padnet", "direct", "padnet/direct"),
            ("shadowsocks", "direct", "ss/direct"),
            ("padnet", "shadowsocks", "padnet/ss"),
        ];
        for (_, _, title) in ratios {
            head += &format!(" {title:>14}");
        }
        println!("{head}");
        for (label, vals, dec) in &self.rows {
            let mut line = format!("  {label:w$}");
            for v in vals {
                match v {
                    Some(v) => line += &format!(" {v:>13.dec$}"),
                    None => line += &format!(" {:>13}", "-"),
                }
            }
            for (a, b, _) in ratios {
                let get = |n: &str| self.col(n).and_then(|i| vals.get(i).copied().flatten());
                match (get(a), get(b)) {
                    (Some(x), Some(y)) if y > 0.0 => line += &format!(" {:>13.2}x", x / y),
                    _ => line += &format!(" {:>14}", "-"),
                }
            }
            println!("{line}");
        }
        for n in &self.notes {
            println!("  {n}");
        }
    }
}
