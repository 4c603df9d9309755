//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The shared fixtures: HEAPDIFF_SHARED, else ../shared beside the project.
pub fn shared() -> PathBuf {
    if let Ok(dir) = std::env::var("HEAPDIFF_SHARED") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}
