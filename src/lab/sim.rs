//! Simulated rings (placeholder, filled in below).

/// Placeholder.
pub fn busy_head_demo() -> String {
    String::new()
}

/// Placeholder.
pub fn lost_wakeup_demo(_d: std::time::Duration) -> String {
    String::new()
}
