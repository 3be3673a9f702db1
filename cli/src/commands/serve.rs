//! `strata serve`

use std::time::Duration;

use anyhow::Result;
use strata_engine::{Engine, Error};
use strata_server::auth::Auth;
use strata_server::ServeConfig;

use crate::args::ServeArgs;

pub fn run(engine: Engine, args: &ServeArgs) -> Result<()> {
    if args.workers == 0 {
        return Err(Error::InvalidArgument("--workers must be at least 1".into()).into());
    }
    let auth = match (args.auth.as_str(), &args.token_file) {
        ("tokens", Some(file)) => Auth::from_file(file).map_err(Error::InvalidArgument)?,
        ("tokens", None) => {
            return Err(Error::InvalidArgument("--auth tokens needs --token-file".into()).into())
        }
        _ => Auth::NoAuth,
    };
    if let Some(root) = &args.share_root {
        if !root.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "--share-root {} is not a directory",
                root.display()
            ))
            .into());
        }
    }
    let config = ServeConfig {
        listen: args.listen,
        workers: args.workers,
        auth,
        share_root: args.share_root.clone(),
        grace: Duration::from_secs(args.grace),
        max_connections: args.max_connections,
    };
    strata_server::serve(engine, config, |addr| {
        eprintln!("listening on http://{addr}");
    })
    .map_err(|e| anyhow::anyhow!(e))
}
