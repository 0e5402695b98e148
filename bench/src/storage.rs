//! `strata-bench storage`: strata-storage against RocksDB and fjall.

use crate::{Record, SuiteOptions};

/// Runs the storage suite.
pub fn run(_opts: &SuiteOptions) -> anyhow::Result<Vec<Record>> {
    anyhow::bail!("the storage suite is not yet built")
}
