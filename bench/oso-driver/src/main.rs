//! `oso-driver CONFIG.yaml`: runs OSO's backup or restore engine (by the config's `mode`)
//! once and exits non-zero on any error, so that the benchmark can time it beside ours.
use kafka_backup_core::backup::BackupEngine;
use kafka_backup_core::config::Mode;
use kafka_backup_core::{Config, RestoreEngine};

#[tokio::main]
async fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: oso-driver CONFIG.yaml");
        std::process::exit(2);
    };
    if let Err(message) = run(&path).await {
        eprintln!("oso-driver: {path}: {message}");
        std::process::exit(1);
    }
}

async fn run(path: &str) -> Result<(), String> {
    let yaml = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let (config, ignored) = Config::from_yaml_with_warnings(&yaml).map_err(|error| error.to_string())?;
    if !ignored.is_empty() {
        return Err(format!("unknown keys: {}", ignored.join(", ")));
    }
    match config.mode {
        Mode::Backup => {
            let engine = BackupEngine::new(config).await.map_err(|error| error.to_string())?;
            engine.run().await.map_err(|error| error.to_string())
        }
        Mode::Restore => {
            let engine = RestoreEngine::new(config).map_err(|error| error.to_string())?;
            engine.run().await.map(|_report| ()).map_err(|error| error.to_string())
        }
    }
}
