//! `corvus store check DIR` and `corvus store dump DIR`: the offline tools for a data
//! directory.
//!
//! This module owns the `store` subcommands: their arguments and help, what they print and
//! their exit codes. The inspection itself (read-only, never changing a byte) is
//! `corvus_store::inspect`.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use corvus_store::inspect::{check_dir, dump_dir};
use corvus_store::StoreError;

/// Exit status of `check` when damage (or anything else the broker would not accept as is)
/// was found.
const EXIT_DAMAGE: i32 = 1;
/// Exit status when the directory cannot be read.
const EXIT_ERROR: i32 = 2;

/// Offline tools for a data directory. They never change anything in it; stop the broker
/// first for figures that do not move.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Verify a data directory without changing it, and report what it holds.
    ///
    /// Reads the keyed state (DIR/state) and every queue segment (DIR/queue), decodes every
    /// journal record and replays them to count live deliveries. Damage is listed with the
    /// file, the offset and what the broker does about it when it next starts (cut a torn
    /// tail, quarantine a corrupt record). A missing directory is an empty store.
    #[command(
        after_help = "Exit status: 0 when clean; 1 when damage was found (or files \
                            that do not belong there, or a directory that is not a Corvus \
                            data directory); 2 on error (e.g. unreadable files)."
    )]
    Check {
        /// The data directory (the broker's --data-dir, default ./corvus-data).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// List the sessions of a data directory, with their queues, and the retained messages.
    ///
    /// One line per session: client id, session expiry, online or offline since when, pending
    /// will, subscriptions, inbound QoS 2 ids, queued and inflight deliveries and their
    /// payload bytes (inbound QoS 2 ids and deliveries both come from the queue journal).
    /// Clients with deliveries or inbound ids in the journal but no session are listed as
    /// "orphan queue".
    #[command(
        after_help = "Exit status: 0; 2 on error (e.g. a damaged state database: run \
                            `corvus store check`)."
    )]
    Dump {
        /// The data directory (the broker's --data-dir, default ./corvus-data).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Runs the subcommand and returns the process's exit status.
pub fn run(cmd: &StoreCommand) -> i32 {
    let (name, result) = match cmd {
        StoreCommand::Check { dir } => (
            "check",
            check_dir(dir).map(|c| (c.to_string(), c.is_clean())),
        ),
        StoreCommand::Dump { dir } => ("dump", dump_dir(dir).map(|d| (d.to_string(), true))),
    };
    match result {
        Ok((text, clean)) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth a panic.
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            if clean {
                0
            } else {
                EXIT_DAMAGE
            }
        }
        Err(e) => {
            eprintln!("corvus store {name}: {e}");
            if matches!(e, StoreError::InUse { .. }) {
                eprintln!(
                    "the running broker has the state database open (one process at a time): \
                     stop it to inspect the directory"
                );
            }
            EXIT_ERROR
        }
    }
}
