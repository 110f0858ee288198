//! `observatory nats-config`: nats-server's accounts for the services and the agencies that
//! publish straight to NATS, written next to a services' NKey seed kept out of it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::NatsConfigArgs;

pub fn write(args: &NatsConfigArgs) -> Result<()> {
    let data_dir = &args.file.data.data_dir;
    let seed_file = args.nats_nkey_file.clone().unwrap_or_else(|| data_dir.join("nats-service.nk"));
    let service = service_key(&seed_file)?;
    let registry = observatory_ingest::AgencyRegistry::open(&args.file.path())?;
    let agencies = registry.agencies();
    let text = observatory_ingest::nats_auth::accounts_config(&service.public_key(), &agencies);
    let out = args.out.clone().unwrap_or_else(|| data_dir.join("observatory-accounts.conf"));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    let on_nats = agencies.iter().filter(|a| a.nats_public_key.is_some()).count();
    eprintln!(
        "wrote {} (the services and {on_nats} agencies on NATS); include it from nats-server.conf, reload \
         the server, and start the services with --nats-nkey-file {}",
        out.display(),
        seed_file.display()
    );
    Ok(())
}

/// The services' key pair: read from `path`, or made and written there (owner-only) once.
fn service_key(path: &Path) -> Result<nkeys::KeyPair> {
    if path.exists() {
        let seed = std::fs::read_to_string(path)
            .with_context(|| format!("reading the services' NKey seed {}", path.display()))?;
        return nkeys::KeyPair::from_seed(seed.trim())
            .with_context(|| format!("{} does not hold an NKey seed", path.display()));
    }
    let pair = nkeys::KeyPair::new_user();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{}", pair.seed().context("a new key has a seed")?)?;
    Ok(pair)
}
