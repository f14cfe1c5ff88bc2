//! `padnet-gateway site ...` and `owner ...`: the operator's side of the
//! site registry (register, verify, show, list, change, remove sites) and of
//! owners' money (statement, funding, cash-out). Through the running gateway
//! or, when none runs, directly.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::admin::{Admin, AdminOp};
use crate::request::guard::UpstreamGuard;
use crate::sites::input::{PremiumInput, PricesInput};
use crate::state_dir::StateDir;
use crate::units::parse_amount;

#[derive(clap::Args)]
pub struct PriceArgs {
    /// Price per page (request) to the site; negative: the owner pays readers.
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    pub per_hit: Option<String>,
    /// Price per MiB carried to and from the site.
    #[arg(long, value_name = "AMOUNT")]
    pub per_mib: Option<String>,
    /// A path prefix with its own hit price (repeatable): /reports/=0.05.
    #[arg(long, value_name = "PREFIX=AMOUNT")]
    pub premium: Vec<String>,
    /// The site's category, for employer policies ("" clears it on `set`).
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
}

impl PriceArgs {
    fn prices(&self, replace_premium: bool) -> anyhow::Result<PricesInput> {
        let premium = self
            .premium
            .iter()
            .map(|p| {
                let (prefix, amount) = p.split_once('=').with_context(|| {
                    format!("--premium {p:?}: expected PREFIX=AMOUNT, as in /reports/=0.05")
                })?;
                Ok(PremiumInput {
                    prefix: prefix.to_string(),
                    per_hit: amount.to_string(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(PricesInput {
            per_hit: self.per_hit.clone(),
            per_mib: self.per_mib.clone(),
            premium: (replace_premium || !premium.is_empty()).then_some(premium),
        })
    }
}

#[derive(clap::Subcommand)]
pub enum SiteCmd {
    /// Register HOST (a new owner is made; its secret is printed once).
    Add {
        #[arg(long)]
        state: PathBuf,
        host: String,
        #[command(flatten)]
        prices: PriceArgs,
        #[arg(long)]
        json: bool,
    },
    /// Fetch HOST's token (http://HOST/.well-known/padnet/TOKEN) and mark it verified.
    Verify {
        #[arg(long)]
        state: PathBuf,
        host: String,
        /// With no gateway running: allow fetching from private addresses.
        #[arg(long)]
        allow_private_upstreams: bool,
    },
    /// Prices, category, verification, owner and totals of HOST.
    Show {
        #[arg(long)]
        state: PathBuf,
        host: String,
        #[arg(long)]
        json: bool,
    },
    /// Every registered site.
    List {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Change HOST's prices or category (what is not given stays).
    Set {
        #[arg(long)]
        state: PathBuf,
        host: String,
        #[command(flatten)]
        prices: PriceArgs,
        /// Remove every premium prefix.
        #[arg(long)]
        no_premium: bool,
    },
    /// Remove HOST (its owner keeps the balance and statements).
    Remove {
        #[arg(long)]
        state: PathBuf,
        host: String,
    },
}

#[derive(clap::Subcommand)]
pub enum OwnerCmd {
    /// An owner's balance, sites and statement per site per UTC day.
    Show {
        #[arg(long)]
        state: PathBuf,
        owner: String,
        #[arg(long)]
        json: bool,
    },
    /// Credit an owner (an advertiser prepaid the operator): issuance → owner.
    Fund {
        #[arg(long)]
        state: PathBuf,
        owner: String,
        #[arg(long, value_name = "AMOUNT")]
        amount: String,
    },
    /// Mint the owner's whole balance into a new pad in --out; prints its path.
    Cashout {
        #[arg(long)]
        state: PathBuf,
        owner: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Key material of the new pad.
        #[arg(long, default_value = crate::sites::accounts::DEFAULT_CASHOUT_SIZE)]
        size: String,
    },
}

fn admin(state: &std::path::Path, allow_private: bool) -> anyhow::Result<Admin> {
    let state = StateDir::open(state)?;
    Admin::connect_guarded(
        &state,
        &state.config.currency,
        UpstreamGuard { allow_private },
    )
}

fn print(v: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

pub fn site(cmd: SiteCmd) -> anyhow::Result<()> {
    match cmd {
        SiteCmd::Add {
            state,
            host,
            prices,
            json,
        } => {
            let op = AdminOp::SiteAdd {
                host,
                prices: prices.prices(false)?,
                category: prices.category.clone(),
            };
            let v = admin(&state, true)?.call(op)?;
            if json {
                println!("{v}");
            } else {
                println!(
                    "registered {} for owner {}",
                    v["host"].as_str().unwrap_or(""),
                    v["owner"].as_str().unwrap_or("")
                );
                println!(
                    "owner secret (shown once): {}",
                    v["secret"].as_str().unwrap_or("")
                );
                println!(
                    "serve the token {} at {}",
                    v["token"].as_str().unwrap_or(""),
                    v["verify_url"].as_str().unwrap_or("")
                );
                println!(
                    "then: padnet-gateway site verify --state DIR {}",
                    v["host"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        SiteCmd::Verify {
            state,
            host,
            allow_private_upstreams,
        } => {
            let v = admin(&state, allow_private_upstreams)?.call(AdminOp::SiteVerify { host })?;
            println!("{} verified", v["host"].as_str().unwrap_or(""));
            Ok(())
        }
        SiteCmd::Show { state, host, json } => print(
            &admin(&state, false)?.call(AdminOp::SiteShow { host })?,
            json,
        ),
        SiteCmd::List { state, json } => {
            print(&admin(&state, false)?.call(AdminOp::SiteList)?, json)
        }
        SiteCmd::Set {
            state,
            host,
            prices,
            no_premium,
        } => {
            let op = AdminOp::SiteSet {
                host,
                prices: prices.prices(no_premium)?,
                category: prices.category.clone(),
            };
            print(&admin(&state, false)?.call(op)?, false)
        }
        SiteCmd::Remove { state, host } => {
            admin(&state, false)?.call(AdminOp::SiteRemove { host: host.clone() })?;
            println!("removed {host}");
            Ok(())
        }
    }
}

pub fn owner(cmd: OwnerCmd) -> anyhow::Result<()> {
    match cmd {
        OwnerCmd::Show { state, owner, json } => print(
            &admin(&state, false)?.call(AdminOp::OwnerShow { owner })?,
            json,
        ),
        OwnerCmd::Fund {
            state,
            owner,
            amount,
        } => {
            let amount = parse_amount(&amount).map_err(|e| anyhow::anyhow!("--amount: {e}"))?;
            if amount <= 0 {
                anyhow::bail!("--amount must be more than zero");
            }
            let v = admin(&state, false)?.call(AdminOp::OwnerFund { owner, amount })?;
            println!(
                "owner {} balance {}",
                v["owner"].as_str().unwrap_or(""),
                v["balance"].as_str().unwrap_or("")
            );
            Ok(())
        }
        OwnerCmd::Cashout {
            state,
            owner,
            out,
            size,
        } => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            // The serving gateway writes the pad: give it a path that means
            // the same from its working directory.
            let out =
                std::fs::canonicalize(&out).with_context(|| format!("--out {}", out.display()))?;
            let v = admin(&state, false)?.call(AdminOp::OwnerCashout {
                owner,
                out,
                size: Some(size),
            })?;
            println!("{}", v["pad"].as_str().unwrap_or(""));
            Ok(())
        }
    }
}
