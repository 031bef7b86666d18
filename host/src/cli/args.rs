//! Consul's way of writing flags (`-recurse`, `-http-addr=...`) turned into clap's
//! (`--recurse`), leaving alone what is not ours to change: the arguments of the child
//! `fsmhost lock` runs.

/// Consul writes long flags with one dash (`-recurse`, `-modify-index=5`); clap wants two.
/// Rewrites a one-dash word of two or more letters to the two-dash form, leaving short
/// flags (`-h`), `-` (stdin) and negative numbers alone.
pub fn normalize_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    // `fsmhost lock [flags] prefix child...`: the child's arguments are its own.
    let end = child_args_start(&args).unwrap_or(args.len());
    let mut rest = args;
    let child = rest.split_off(end);
    rest.into_iter()
        .map(|a| match a.to_str() {
            Some(s)
                if s.len() > 2
                    && s.starts_with('-')
                    && !s.starts_with("--")
                    && s[1..]
                        .chars()
                        .take_while(|c| *c != '=')
                        .all(|c| c.is_ascii_lowercase() || c == '-')
                    && s[1..]
                        .chars()
                        .nth(1)
                        .is_some_and(|c| c.is_ascii_lowercase() || c == '-') =>
            {
                format!("-{s}").into()
            }
            _ => a,
        })
        .chain(child)
        .collect()
}

/// Where the child's arguments of `fsmhost lock` start: after the first positional
/// argument (the prefix) that is not the value of a flag.
fn child_args_start(args: &[std::ffi::OsString]) -> Option<usize> {
    const TAKES_VALUE: [&str; 11] = [
        "n",
        "name",
        "timeout",
        "monitor-retry",
        "http-addr",
        "ca-file",
        "ca-path",
        "client-cert",
        "client-key",
        "tls-server-name",
        "token",
    ];
    let lock = args.iter().position(|a| a == "lock")?;
    let mut i = lock + 1;
    while i < args.len() {
        let a = args[i].to_str()?;
        if let Some(flag) = a.strip_prefix('-') {
            let flag = flag.trim_start_matches('-');
            if !flag.contains('=') && TAKES_VALUE.contains(&flag) {
                i += 1;
            }
        } else {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::normalize_args;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(std::ffi::OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn consul_style_flags_are_normalized_but_a_lock_childs_arguments_are_not() {
        assert_eq!(
            norm(&["fsmhost", "kv", "get", "-recurse", "a"]),
            ["fsmhost", "kv", "get", "--recurse", "a"]
        );
        assert_eq!(
            norm(&[
                "fsmhost",
                "lock",
                "-timeout",
                "5s",
                "-n",
                "2",
                "-verbose",
                "svc/leader",
                "tool",
                "-verbose",
                "-x"
            ]),
            [
                "fsmhost",
                "lock",
                "--timeout",
                "5s",
                "-n",
                "2",
                "--verbose",
                "svc/leader",
                "tool",
                "-verbose",
                "-x"
            ]
        );
        assert_eq!(
            norm(&["fsmhost", "lock", "-shell=false", "p", "ls", "-la"]),
            ["fsmhost", "lock", "--shell=false", "p", "ls", "-la"]
        );
    }
}
