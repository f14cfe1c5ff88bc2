//! The site registry as the request path and the operator see it: the rate
//! a request to a verified site pays, and each host's category (the
//! registry's, else the operator's list) for employer policies.
//!
//! - `input`: what owners and the operator send, checked field by field.
//! - `secret`: owner ids, secrets (argon2-hashed) and verification tokens.
//! - `categories`: the operator's host → category list (`serve --categories`).
//! - `verify`: fetching the token a site serves, through the upstream guard.
//! - `ops`: every site operation, shared by the portal and admin commands.
//! - `accounts`: owners' statements, funding, cash-out and the export.

pub mod accounts;
pub mod categories;
pub mod input;
pub mod ops;
pub mod secret;
pub mod verify;

use crate::ledger::Book;
use crate::pricing::SiteRate;

/// The registry name of a request host: normalised, no port.
pub fn site_name(host: &str) -> Option<String> {
    policy::normalise_host(host).ok().map(|h| h.into_owned())
}

/// The rate a request to `host` with `path` (`None`: CONNECT) pays the
/// site, if the site is registered and verified.
pub fn rate_for(book: &Book, host: &str, path: Option<&str>) -> Option<SiteRate> {
    let name = site_name(host)?;
    let site = book.sites.get(&name).filter(|s| s.verified)?;
    let rate = SiteRate::of(&name, site, path);
    (rate.hit != 0 || rate.per_mib != 0).then_some(rate)
}

/// Categories for policies: the registry's (the operator sets them) first,
/// then the operator's list for sites that are not registered.
pub struct Categories<'a> {
    pub book: &'a Book,
    pub listed: &'a categories::CategoryList,
}

impl policy::CategoryLookup for Categories<'_> {
    fn category(&self, normalised_host: &str) -> Option<&str> {
        self.book
            .sites
            .get(normalised_host)
            .and_then(|s| s.category.as_deref())
            .or_else(|| self.listed.category(normalised_host))
    }
}
