//! Test-only reference models the optimised structures are checked against.

/// MQTT matching (section 4.7), level by level, with no cleverness: the model the
/// subscription trie and the retained index are compared with.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    // Wildcards at the first level do not match `$` topics [MQTT-4.7.2-1].
    if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    let mut i = 0;
    loop {
        if i == f.len() {
            return i == t.len();
        }
        if f[i] == "#" {
            return true;
        }
        if i == t.len() || (f[i] != "+" && f[i] != t[i]) {
            return false;
        }
        i += 1;
    }
}
