//! One iptables rule inside a namespace, removed when dropped, with its
//! packet counter readable (each rule carries a unique comment).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::command::run;
use crate::error::{NetemError, Result};
use crate::netns::Netns;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// An appended iptables rule (IPv4, `filter` table unless said otherwise).
#[derive(Debug)]
pub struct Rule {
    ns: String,
    table: String,
    chain: String,
    /// The rule specification as given, plus the identifying comment.
    spec: Vec<String>,
    comment: String,
}

impl Rule {
    /// Appends `spec` (e.g. `["-p", "udp", "-j", "DROP"]`) to `chain` of
    /// `table` inside `ns`.
    pub fn append(ns: &Netns, table: &str, chain: &str, spec: &[&str]) -> Result<Rule> {
        let comment = format!(
            "ferry-netem-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut full: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
        full.extend(["-m", "comment", "--comment", &comment].map(String::from));
        let rule = Rule {
            ns: ns.name().to_string(),
            table: table.to_string(),
            chain: chain.to_string(),
            spec: full,
            comment,
        };
        rule.iptables("-A")?;
        Ok(rule)
    }

    fn iptables(&self, op: &str) -> Result<String> {
        let mut v = vec![
            "ip",
            "netns",
            "exec",
            &self.ns,
            "iptables",
            "-w",
            "5",
            "-t",
            &self.table,
            op,
            &self.chain,
        ];
        v.extend(self.spec.iter().map(String::as_str));
        run(&v)
    }

    /// How many packets the rule has matched so far.
    pub fn packets(&self) -> Result<u64> {
        let listing = run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "iptables",
            "-w",
            "5",
            "-t",
            &self.table,
            "-v",
            "-S",
            &self.chain,
        ])?;
        // `-v -S` appends `-c <packets> <bytes>` to each rule.
        listing
            .lines()
            .find(|l| l.contains(&self.comment))
            .and_then(|l| {
                let mut words = l.split_whitespace().skip_while(|w| *w != "-c");
                words.next()?;
                words.next()?.parse().ok()
            })
            .ok_or_else(|| NetemError::Command {
                command: format!("iptables -v -S {}", self.chain),
                status: "no counter".into(),
                stderr: format!("rule {} not found in:\n{listing}", self.comment),
            })
    }

    /// Removes the rule now (also done on drop); an error if it is gone.
    pub fn remove(mut self) -> Result<()> {
        let r = self.iptables("-D").map(|_| ());
        self.spec.clear();
        r
    }
}

impl Drop for Rule {
    fn drop(&mut self) {
        if !self.spec.is_empty() {
            let _ = self.iptables("-D");
        }
    }
}
