//! Turns policy TOML into the compiled form `Policy` wraps: checks every key,
//! type and value against the schema and reports the first problem with the
//! exact line and column of the offending key or value.

use crate::error::PolicyError;
use crate::host::HostSet;
use crate::hours::{self, Hours};
use crate::limits::Limits;
use crate::node::{start, Node, Spanned};
use crate::units;
use sha2::{Digest, Sha256};

/// Everything `decide` and the accessors need, precomputed.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) name: String,
    pub(crate) id: [u8; 32],
    pub(crate) id_hex: String,
    pub(crate) allow: HostSet,
    pub(crate) deny: HostSet,
    /// `allow` or `categories` present: unlisted sites are denied.
    pub(crate) restricted: bool,
    /// Lower case; compared ASCII case-insensitively.
    pub(crate) categories: Vec<String>,
    /// Sorted, without duplicates.
    pub(crate) ports: Vec<u16>,
    pub(crate) ports_default: bool,
    /// `80, 443`
    pub(crate) ports_list: String,
    /// `sites.ports [80, 443]`
    pub(crate) ports_rule: String,
    pub(crate) hours: Option<Hours>,
    /// `hours mon-fri 08:00-18:00 +01:00`
    pub(crate) hours_rule: String,
    pub(crate) limits: Limits,
}

type Entries = [(Spanned<String>, Spanned<Node>)];

const SITE_HINT: &str = "expected a host name (docs.rs), a wildcard (*.example.com, or * for \
                         everything), an IP address or a CIDR range (10.0.0.0/8)";

/// Error context: where the source came from, to turn offsets into locations.
struct Ctx<'a> {
    origin: &'a str,
    src: &'a str,
}

impl<'a> Ctx<'a> {
    fn err(&self, at: usize, field: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::at(self.origin, self.src, at, field, message)
    }

    fn type_err(
        &self,
        node: &Spanned<Node>,
        field: &str,
        want: &str,
        example: &str,
    ) -> PolicyError {
        let found = node.get_ref().kind();
        self.err(
            start(node),
            field,
            format!("expected {want}, as in {example}; found {found}"),
        )
    }

    /// The entries of a table, rejecting keys not in `allowed`.
    fn table<'n>(
        &self,
        node: &'n Spanned<Node>,
        path: &str,
        allowed: &[&str],
        example: &str,
    ) -> Result<&'n Entries, PolicyError> {
        let Node::Table(entries) = node.get_ref() else {
            return Err(self.type_err(node, path, "a table", example));
        };
        self.known_keys(entries, path, allowed)?;
        Ok(entries)
    }

    fn known_keys(
        &self,
        entries: &Entries,
        path: &str,
        allowed: &[&str],
    ) -> Result<(), PolicyError> {
        for (key, _) in entries {
            let k = key.get_ref().as_str();
            if !allowed.contains(&k) {
                let field = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                return Err(self.err(
                    start(key),
                    &field,
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn string<'n>(
        &self,
        node: &'n Spanned<Node>,
        field: &str,
        example: &str,
    ) -> Result<&'n str, PolicyError> {
        match node.get_ref() {
            Node::Str(s) => Ok(s),
            _ => Err(self.type_err(node, field, "a string", example)),
        }
    }

    fn int(&self, node: &Spanned<Node>, field: &str, example: &str) -> Result<i64, PolicyError> {
        match node.get_ref() {
            Node::Int(i) => Ok(*i),
            _ => Err(self.type_err(node, field, "a whole number", example)),
        }
    }

    fn array<'n>(
        &self,
        node: &'n Spanned<Node>,
        field: &str,
        example: &str,
    ) -> Result<&'n [Spanned<Node>], PolicyError> {
        match node.get_ref() {
            Node::Array(items) => Ok(items),
            _ => Err(self.type_err(node, field, "a list", example)),
        }
    }

    /// A whole number in `1..=max`, for limits.
    fn positive(
        &self,
        node: &Spanned<Node>,
        field: &str,
        example: &str,
        max: u64,
    ) -> Result<u64, PolicyError> {
        let v = self.int(node, field, example)?;
        if v < 1 {
            return Err(self.err(
                start(node),
                field,
                format!("{v} is not allowed; expected a whole number of at least 1 (leave the key out for no limit)"),
            ));
        }
        // v >= 1 here, so it fits in u64.
        let v = v as u64;
        if v > max {
            return Err(self.err(
                start(node),
                field,
                format!("{v} is too large; expected at most {max}"),
            ));
        }
        Ok(v)
    }
}

fn get<'n>(entries: &'n Entries, key: &str) -> Option<&'n Spanned<Node>> {
    entries
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

pub(crate) fn compile(src: &str, origin: &str) -> Result<Compiled, PolicyError> {
    let ctx = Ctx { origin, src };
    let root = match toml::from_str::<Node>(src) {
        Ok(Node::Table(entries)) => entries,
        Ok(other) => {
            return Err(ctx.err(
                0,
                "",
                format!("expected a TOML table; found {}", other.kind()),
            ))
        }
        Err(e) => {
            let at = e.span().map_or(0, |r| r.start);
            let message: Vec<&str> = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Err(ctx.err(at, "syntax", message.join("; ")));
        }
    };
    ctx.known_keys(&root, "", &["name", "sites", "hours", "limits"])?;

    let name = match get(&root, "name") {
        Some(node) => {
            let s = ctx.string(node, "name", "name = \"Acme staff\"")?;
            if s.trim().is_empty() {
                return Err(ctx.err(start(node), "name", "must not be empty; expected a name people will recognise, as in name = \"Acme staff\""));
            }
            Some(s.trim().to_string())
        }
        None => None,
    };

    let mut c = Compiled {
        name: String::new(),
        id: Sha256::digest(src.as_bytes()).into(),
        id_hex: String::new(),
        allow: HostSet::default(),
        deny: HostSet::default(),
        restricted: false,
        categories: Vec::new(),
        ports: vec![80, 443],
        ports_default: true,
        ports_list: String::new(),
        ports_rule: String::new(),
        hours: None,
        hours_rule: String::new(),
        limits: Limits::default(),
    };
    c.id_hex = hex::encode(c.id);

    if let Some(node) = get(&root, "sites") {
        sites(&ctx, node, &mut c)?;
    }
    if let Some(node) = get(&root, "hours") {
        let h = parse_hours(&ctx, node)?;
        c.hours_rule = format!("hours {}", h.label());
        c.hours = Some(h);
    }
    if let Some(node) = get(&root, "limits") {
        c.limits = limits(&ctx, node)?;
    }
    c.name = name.ok_or_else(|| {
        ctx.err(0, "name", "missing; every policy needs a name, as in name = \"Acme staff\" at the top of the file")
    })?;
    let list: Vec<String> = c.ports.iter().map(u16::to_string).collect();
    c.ports_list = list.join(", ");
    c.ports_rule = format!("sites.ports [{}]", c.ports_list);
    Ok(c)
}

fn sites(ctx: &Ctx<'_>, node: &Spanned<Node>, c: &mut Compiled) -> Result<(), PolicyError> {
    let t = ctx.table(
        node,
        "sites",
        &["allow", "deny", "categories", "ports"],
        "[sites] with allow = [\"docs.rs\"]",
    )?;
    for (key, set) in [("allow", &mut c.allow), ("deny", &mut c.deny)] {
        let Some(list) = get(t, key) else { continue };
        let field = format!("sites.{key}");
        let example = format!("{key} = [\"docs.rs\", \"*.example.com\"]");
        for item in ctx.array(list, &field, &example)? {
            let pattern = ctx.string(item, &field, &example)?;
            set.insert(pattern).map_err(|e| {
                ctx.err(start(item), &field, format!("{pattern:?} {e}; {SITE_HINT}"))
            })?;
        }
    }
    if let Some(list) = get(t, "categories") {
        let example = "categories = [\"news\", \"reference\"]";
        for item in ctx.array(list, "sites.categories", example)? {
            let cat = ctx.string(item, "sites.categories", example)?;
            if cat.trim().is_empty() || cat.trim().contains(char::is_whitespace) {
                return Err(ctx.err(
                    start(item),
                    "sites.categories",
                    format!("{cat:?} is not a category name; expected a name from the site registry, such as \"news\""),
                ));
            }
            let cat = cat.trim().to_ascii_lowercase();
            if !c.categories.contains(&cat) {
                c.categories.push(cat);
            }
        }
    }
    let allow = get(t, "allow");
    let cats = get(t, "categories");
    c.restricted = allow.is_some() || cats.is_some();
    if c.restricted && c.allow.len() == 0 && c.categories.is_empty() {
        return Err(match (allow, cats) {
            (Some(node), _) => ctx.err(
                start(node),
                "sites.allow",
                "empty allow list denies everything; remove it or list sites",
            ),
            (None, Some(node)) => ctx.err(
                start(node),
                "sites.categories",
                "empty categories list denies everything; remove it or list categories",
            ),
            (None, None) => ctx.err(
                0,
                "sites",
                "internal: restricted without allow or categories",
            ),
        });
    }
    if let Some(list) = get(t, "ports") {
        let example = "ports = [80, 443]";
        let items = ctx.array(list, "sites.ports", example)?;
        if items.is_empty() {
            return Err(ctx.err(
                start(list),
                "sites.ports",
                "empty ports list denies everything; remove it (80 and 443 are allowed by default) or list ports",
            ));
        }
        let mut ports = Vec::with_capacity(items.len());
        for item in items {
            let p = ctx.int(item, "sites.ports", example)?;
            let p = u16::try_from(p).ok().filter(|&p| p != 0).ok_or_else(|| {
                ctx.err(
                    start(item),
                    "sites.ports",
                    format!("{p} is not a port; expected a number from 1 to 65535"),
                )
            })?;
            ports.push(p);
        }
        ports.sort_unstable();
        ports.dedup();
        c.ports = ports;
        c.ports_default = false;
    }
    Ok(())
}

fn parse_hours(ctx: &Ctx<'_>, node: &Spanned<Node>) -> Result<Hours, PolicyError> {
    let t = ctx.table(
        node,
        "hours",
        &["days", "from", "to", "utc_offset"],
        "[hours] with days = \"mon-fri\"",
    )?;
    let (days, days_text) = match get(t, "days") {
        Some(n) => {
            let s = ctx.string(n, "hours.days", "days = \"mon-fri\"")?;
            hours::parse_days(s).map_err(|e| ctx.err(start(n), "hours.days", e))?
        }
        None => hours::parse_days("daily").map_err(|e| ctx.err(start(node), "hours.days", e))?,
    };
    let time = |key: &str, example: &str| -> Result<Option<(u16, usize)>, PolicyError> {
        let field = format!("hours.{key}");
        let Some(n) = get(t, key) else {
            return Ok(None);
        };
        let s = ctx.string(n, &field, example)?;
        let m = hours::parse_hhmm(s).map_err(|e| ctx.err(start(n), &field, e))?;
        Ok(Some((m, start(n))))
    };
    let from = time("from", "from = \"08:00\"")?;
    let to = time("to", "to = \"18:00\"")?;
    let window = match (from, to) {
        (None, None) => None,
        (Some((_, at)), None) => {
            return Err(ctx.err(at, "hours.from", "set without hours.to; set both, as in from = \"08:00\" and to = \"18:00\", or neither for the whole day"))
        }
        (None, Some((_, at))) => {
            return Err(ctx.err(at, "hours.to", "set without hours.from; set both, as in from = \"08:00\" and to = \"18:00\", or neither for the whole day"))
        }
        (Some((f, _)), Some((to_min, at))) if f == to_min => {
            return Err(ctx.err(at, "hours.to", "equals hours.from, so the window would be empty; leave out from and to for the whole day"))
        }
        (Some((f, _)), Some((to_min, _))) => Some((f, to_min)),
    };
    let offset = match get(t, "utc_offset") {
        Some(n) => {
            let s = ctx.string(n, "hours.utc_offset", "utc_offset = \"+01:00\"")?;
            hours::parse_offset(s).map_err(|e| ctx.err(start(n), "hours.utc_offset", e))?
        }
        None => 0,
    };
    Ok(Hours::new(days, &days_text, window, offset))
}

fn limits(ctx: &Ctx<'_>, node: &Spanned<Node>) -> Result<Limits, PolicyError> {
    let t = ctx.table(
        node,
        "limits",
        &["spend_per_day", "requests_per_minute", "mib_per_day"],
        "[limits] with spend_per_day = \"5.00\"",
    )?;
    let mut limits = Limits::default();
    if let Some(n) = get(t, "spend_per_day") {
        let field = "limits.spend_per_day";
        let s = ctx.string(n, field, "spend_per_day = \"5.00\" (a quoted decimal)")?;
        let v = units::parse_amount(s).map_err(|e| ctx.err(start(n), field, e))?;
        if v < 0 {
            return Err(ctx.err(
                start(n),
                field,
                format!("{s:?} is negative; expected an amount of 0 or more, as in \"5.00\""),
            ));
        }
        limits.spend_per_day = Some(v);
    }
    if let Some(n) = get(t, "requests_per_minute") {
        let v = ctx.positive(
            n,
            "limits.requests_per_minute",
            "requests_per_minute = 600",
            u64::from(u32::MAX),
        )?;
        // positive() bounded it by u32::MAX.
        limits.requests_per_minute = u32::try_from(v).ok();
    }
    if let Some(n) = get(t, "mib_per_day") {
        limits.mib_per_day = Some(ctx.positive(
            n,
            "limits.mib_per_day",
            "mib_per_day = 500",
            i64::MAX as u64,
        )?);
    }
    Ok(limits)
}
