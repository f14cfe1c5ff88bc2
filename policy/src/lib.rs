//! Employer policies: parse a TOML policy file, compile it into a fast
//! matcher, and decide per request whether the gateway may forward it.
//! Pure and I/O-light: the only I/O is [`Policy::load`] reading one file.
#![forbid(unsafe_code)]

mod compile;
mod error;
mod host;
mod hours;
mod limits;
mod node;
pub mod units;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use error::PolicyError;
pub use host::normalise_host;
pub use limits::Limits;

use compile::Compiled;

/// A compiled employer policy. Immutable; cloning is cheap (shared).
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Compiled>,
}

/// What the gateway knows about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// Host as the client sent it (any case, IDNA, IP literal, `[v6]`).
    pub host: &'a str,
    /// Destination port (plain HTTP or CONNECT).
    pub port: u16,
    /// Request path for plain requests; reserved for future path rules.
    pub path: Option<&'a str>,
    /// Current time, Unix seconds.
    pub now_unix: i64,
}

/// Maps a normalised host to its category in the site registry.
pub trait CategoryLookup {
    /// The category of `normalised_host`, or `None` if the registry does not
    /// know it (the policy then treats it as `"uncategorised"`).
    fn category(&self, normalised_host: &str) -> Option<&str>;
}

/// A lookup that knows no sites: everything is `"uncategorised"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCategories;

impl CategoryLookup for NoCategories {
    fn category(&self, _normalised_host: &str) -> Option<&str> {
        None
    }
}

/// The category of sites the registry does not know.
pub const UNCATEGORISED: &str = "uncategorised";

/// The verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule that denied it: `sites.deny "ads.acme.example"`,
    /// `sites.allow (default deny)`, `sites.ports [80, 443]`,
    /// `hours mon-fri 08:00-18:00 +01:00`, or `host` for an invalid host.
    pub rule: String,
    /// A sentence a person can act on.
    pub message: String,
}

fn deny(rule: String, message: String) -> Decision {
    Decision::Deny(Denial { rule, message })
}

impl Policy {
    /// Parse + compile. `origin` names the file in errors (e.g. "data/policies/staff.toml").
    pub fn parse(src: &str, origin: &str) -> Result<Policy, PolicyError> {
        compile::compile(src, origin).map(|c| Policy { inner: Arc::new(c) })
    }

    /// Read and parse a file (errors name the path; an unreadable file is an error too).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| PolicyError::file(&origin, format!("cannot read policy file: {e}")))?;
        let src = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix up to valid_up_to() is valid UTF-8 by definition.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            PolicyError::at(
                &origin,
                prefix,
                prefix.len(),
                "",
                "the file is not UTF-8 text",
            )
        })?;
        Policy::parse(src, &origin)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Lower-case hex SHA-256 of the exact source bytes: the policy's id.
    pub fn id_hex(&self) -> &str {
        &self.inner.id_hex
    }

    /// SHA-256 of the exact source bytes.
    pub fn id(&self) -> [u8; 32] {
        self.inner.id
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Allowed ports, ascending (default [80, 443]).
    pub fn ports(&self) -> &[u16] {
        &self.inner.ports
    }

    /// Decide one request. Checks, in order: port, hours, deny list, then
    /// (if the policy has an allow list or categories) allow list or category.
    ///
    /// Allocates nothing on the allow path when the host is already
    /// normalised (at most one `String` to normalise it otherwise); a denial
    /// allocates its two message strings.
    pub fn decide(&self, req: &RequestFacts<'_>, categories: &dyn CategoryLookup) -> Decision {
        let c = &*self.inner;
        if c.ports.binary_search(&req.port).is_err() {
            return deny(
                c.ports_rule.clone(),
                format!(
                    "port {} is not allowed by this policy (allowed: {})",
                    req.port, c.ports_list
                ),
            );
        }
        if let Some(hours) = &c.hours {
            if let Err(now) = hours.check(req.now_unix) {
                return deny(
                    c.hours_rule.clone(),
                    format!(
                        "outside this policy's hours ({}); it is {now} there now",
                        hours.label()
                    ),
                );
            }
        }
        let host = match host::parse_host(req.host) {
            Ok(h) => h,
            Err(why) => {
                return deny(
                    "host".to_string(),
                    format!("{:?} {why}; check the address", req.host),
                )
            }
        };
        if let Some(pattern) = c.deny.find(&host) {
            return deny(
                ["sites.deny ", pattern].concat(),
                deny_message(&host.text(), pattern),
            );
        }
        if !c.restricted || c.allow.find(&host).is_some() {
            return Decision::Allow;
        }
        let text = host.text();
        let mut category = None;
        if !c.categories.is_empty() {
            let cat = categories.category(&text).unwrap_or(UNCATEGORISED);
            if c.categories.iter().any(|a| a.eq_ignore_ascii_case(cat)) {
                return Decision::Allow;
            }
            category = Some(cat);
        }
        let message = match category {
            Some(cat) => [
                &*text,
                " is not on this policy's allow list and its category \"",
                cat,
                "\" is not allowed; ask whoever manages the policy to add it",
            ]
            .concat(),
            None => [
                &*text,
                " is not on this policy's allow list; ask whoever manages the policy to add it",
            ]
            .concat(),
        };
        deny("sites.allow (default deny)".to_string(), message)
    }

    /// Multi-line human summary for `padnet-gateway policy check`.
    pub fn summary(&self) -> String {
        let c = &*self.inner;
        let patterns = |n: usize, w: usize| match (n, w) {
            (0, _) => "none".to_string(),
            (1, 0) => "1 pattern".to_string(),
            (n, 0) => format!("{n} patterns"),
            (1, _) => "1 pattern (wildcard)".to_string(),
            (n, w) => format!("{n} patterns ({w} wildcard)"),
        };
        let mut out = format!("policy \"{}\"\n  id:       {}\n", c.name, c.id_hex);
        let deny = patterns(c.deny.len(), c.deny.wildcards());
        let sites = if c.restricted {
            let cats = if c.categories.is_empty() {
                String::new()
            } else {
                format!(", categories {}", c.categories.join(", "))
            };
            let allow = patterns(c.allow.len(), c.allow.wildcards());
            format!("allow {allow}{cats}; deny {deny}; anything else is denied")
        } else if c.deny.len() > 0 {
            format!("any site except deny {deny}")
        } else {
            "any site".to_string()
        };
        out.push_str(&format!("  sites:    {sites}\n"));
        let ports: Vec<String> = c.ports.iter().map(u16::to_string).collect();
        let default = if c.ports_default { " (default)" } else { "" };
        out.push_str(&format!("  ports:    {}{default}\n", ports.join(", ")));
        let hours = c.hours.as_ref().map_or("any time", |h| h.label());
        out.push_str(&format!("  hours:    {hours}\n"));
        let l = &c.limits;
        let mut limits = Vec::new();
        if let Some(s) = l.spend_per_day {
            limits.push(format!("spend {}/day", units::format_amount(s)));
        }
        if let Some(r) = l.requests_per_minute {
            limits.push(format!("{r} requests/minute"));
        }
        if let Some(m) = l.mib_per_day {
            limits.push(format!("{m} MiB/day"));
        }
        let limits = if limits.is_empty() {
            "none".to_string()
        } else {
            limits.join(", ")
        };
        out.push_str(&format!("  limits:   {limits}\n"));
        out
    }
}

/// `pattern` is quoted, as `HostSet::find` returns it.
fn deny_message(host: &str, pattern: &str) -> String {
    let unquoted = pattern.strip_prefix('"').and_then(|p| p.strip_suffix('"'));
    if unquoted == Some(host) {
        [host, " is on this policy's deny list"].concat()
    } else {
        [
            host,
            " is on this policy's deny list (matches ",
            pattern,
            ")",
        ]
        .concat()
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.inner;
        f.debug_struct("Policy")
            .field("name", &c.name)
            .field("id", &c.id_hex)
            .field("allow", &c.allow.len())
            .field("deny", &c.deny.len())
            .field("categories", &c.categories)
            .field("ports", &c.ports)
            .field("hours", &c.hours.as_ref().map(|h| h.label()))
            .field("limits", &c.limits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_send_sync() {
        fn check<T: Send + Sync + Clone + fmt::Debug>() {}
        check::<Policy>();
    }
}
