//! The operator's requests as they travel over the admin socket: one
//! variant per command, serialised as JSON with an `op` tag.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sites::input::PricesInput;

/// One operator request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminOp {
    /// Credit a newly minted pad with its value (issuance → pad).
    Issue {
        serial: String,
        value: i64,
    },
    /// Balances by account kind.
    Ledger,
    /// One pad's value, key material and status.
    PadShow {
        serial: String,
    },
    /// Check conservation.
    Audit,
    /// Re-read policy files.
    ReloadPolicies,
    /// Store an employer policy (`mint --policy`); with `update`, make it
    /// current for its name (`policy update`). On a shared ledger it is
    /// recorded in the book too, for every gateway.
    StorePolicy {
        source: String,
        update: bool,
    },
    /// Register a site (and a new owner for it, whose secret is returned once).
    SiteAdd {
        host: String,
        prices: PricesInput,
        category: Option<String>,
    },
    /// Fetch a site's token and mark it verified.
    SiteVerify {
        host: String,
    },
    SiteShow {
        host: String,
    },
    SiteList,
    /// Change prices (fields not given keep theirs) and the category
    /// (`Some("")` clears it).
    SiteSet {
        host: String,
        prices: PricesInput,
        category: Option<String>,
    },
    SiteRemove {
        host: String,
    },
    OwnerShow {
        owner: String,
    },
    /// An advertiser prepaid the operator: issuance → the owner's balance.
    OwnerFund {
        owner: String,
        amount: i64,
    },
    /// Mint the owner's whole balance into a pad in `out` (an absolute path).
    OwnerCashout {
        owner: String,
        out: PathBuf,
        size: Option<String>,
    },
    /// Every record the ledger and registry keep.
    LedgerExport,
    /// Record a pad minted blank: an empty account until activated.
    IssueInactive {
        serial: String,
        value: i64,
    },
    /// Activate a blank pad (with `value`, or the value it was minted with).
    Activate {
        serial: String,
        value: Option<i64>,
    },
    /// Make a retailer (its till token is returned once).
    RetailerAdd {
        name: String,
    },
    RetailerShow {
        name: String,
    },
    /// Cancel a pad into a user's account, or into a replacement pad
    /// minted in `replace_out` (an absolute path).
    Cancel {
        serial: String,
        to_account: Option<String>,
        replace_out: Option<PathBuf>,
        size: Option<String>,
    },
    AccountShow {
        account: String,
    },
}
