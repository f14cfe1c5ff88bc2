//! `padnet-gateway init`: create a state directory.

use std::path::PathBuf;

use crate::state_dir::StateDir;

#[derive(clap::Args)]
pub struct InitArgs {
    #[arg(long)]
    pub state: PathBuf,
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
}

pub fn run(a: InitArgs) -> anyhow::Result<()> {
    let s = StateDir::init(&a.state, &a.listen)?;
    println!(
        "initialised {} (pads will name gateway {})",
        s.root.display(),
        s.config.listen
    );
    Ok(())
}
