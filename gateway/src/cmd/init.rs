//! `padnet-gateway init`: create a state directory.

use std::path::PathBuf;

use crate::state_dir::StateDir;

#[derive(clap::Args)]
pub struct InitArgs {
    #[arg(long)]
    pub state: PathBuf,
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Keep the ledger in PostgreSQL, shared with other gateways
    /// (postgres://user@host:port/database); default: embedded, in the state directory.
    #[arg(long, value_name = "URL")]
    pub ledger_url: Option<String>,
}

pub fn run(a: InitArgs) -> anyhow::Result<()> {
    let s = StateDir::init(&a.state, &a.listen, a.ledger_url.as_deref())?;
    println!(
        "initialised {} (pads will name gateway {})",
        s.root.display(),
        s.config.listen
    );
    if s.config.ledger.is_some() {
        println!("the ledger is shared, in PostgreSQL (gateway.toml: ledger)");
    }
    Ok(())
}
