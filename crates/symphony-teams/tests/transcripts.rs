//! The software crew's committed transcripts (docs/transcripts/software, written by
//! scripts/software_crew.py): the conversation is well formed, and every program a
//! completed run delivered passes its own tests when run again in the sandbox.

use std::path::Path;

use serde_json::Value;
use symphony_teams::crew::check_python;

#[test]
fn the_software_crews_programs_pass_their_tests_again() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/transcripts/software");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the transcripts are committed")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    let mut completed = 0;
    for file in &files {
        let report: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let messages = report["messages"].as_array().unwrap();
        // The request goes first, every message has a sender and receivers.
        assert_eq!(messages[0]["performative"], "request", "{}", file.display());
        assert!(messages
            .iter()
            .all(|m| m["sender"].is_string() && !m["receivers"].as_array().unwrap().is_empty()));
        if report["status"]["state"] != "completed" {
            continue;
        }
        completed += 1;
        // The crew confirmed the delivered program, and it passes its tests again.
        assert_eq!(
            messages.last().unwrap()["performative"],
            "confirm",
            "{}",
            file.display()
        );
        let (verdict, _) = check_python(report["result"].as_str().unwrap());
        assert!(verdict.is_ok(), "{}: {verdict:?}", file.display());
    }
    assert!(completed > 0, "no completed run among {files:?}");
}
