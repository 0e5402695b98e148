//! `strata-bench cache`: strata-cache against moka and quick_cache.

use crate::{Record, SuiteOptions};

/// Runs the cache suite.
pub fn run(_opts: &SuiteOptions) -> anyhow::Result<Vec<Record>> {
    anyhow::bail!("the cache suite is not yet built")
}
