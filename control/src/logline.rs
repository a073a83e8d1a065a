//! TEMPORARY stub (replaced by the real formatter on merge).
use classifier::LogTarget;
use dataplane::log::LogRecord;
pub fn format_log_line(_rec: &LogRecord, log: &LogTarget) -> String {
    log.prefix.clone()
}
