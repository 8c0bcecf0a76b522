//! The agents' SQLite files (runs, memories): opened the one way both need.

use std::path::Path;

use rusqlite::Connection;

use crate::error::Error;

/// An agents' database at `path` (made, with its directory, if missing), in WAL mode with a
/// busy timeout, `schema` applied. WAL: a committed write survives the process being killed
/// at any moment; the timeout: the CLI and a server take turns at the same file.
pub(crate) fn open_sqlite(path: &Path, schema: &str) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Runs(format!("{}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path).map_err(db_error)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
        .map_err(db_error)?;
    conn.execute_batch(schema).map_err(db_error)?;
    Ok(conn)
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::Runs(e.to_string())
}
