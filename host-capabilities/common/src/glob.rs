//! Name globs of grants (`orders.*`, `*-dlq`): `*` matches any run of
//! characters, everything else matches itself. No other metacharacters, so
//! a topic or queue name can never widen a grant.

/// Whether `name` matches `pattern`.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Position after the last `*` and the name position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi + 1, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((after, tried)) = star {
            pi = after;
            ni = tried + 1;
            star = Some((after, tried + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A glob list that is usable as a grant: non-empty entries, printable.
pub fn check_globs(globs: &[String]) -> Result<(), String> {
    for g in globs {
        if g.is_empty() || g.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("{g:?} is not a valid name pattern"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn stars_match_runs_and_nothing_else_is_special() {
        assert!(glob_matches("orders.*", "orders.created"));
        assert!(glob_matches("orders.*", "orders."));
        assert!(!glob_matches("orders.*", "orders"));
        assert!(!glob_matches("orders.*", "ordersXcreated"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exact2"));
        assert!(!glob_matches("?", "x"));
        assert!(glob_matches("*-dlq", "payments-dlq"));
    }
}
