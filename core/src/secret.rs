//! What a bearer token must look like before poet will accept it as a credential
//! (SECURITY.md, finding 3): long, random-looking, and not one of the placeholders the deploy
//! examples ship with. The coordinator checks its static tokens at startup with [`check_token`];
//! tokens poet makes itself (`poet token create`) pass by construction.

/// The fewest characters a token may have: 32 characters of hex carry 128 bits.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The fewest distinct characters: rules out `aaaa…` and `abababab…`, which pass the length.
const MIN_DISTINCT_CHARS: usize = 8;

/// Words that mark an example value someone forgot to replace. Compared case-insensitively.
const PLACEHOLDERS: &[&str] = &[
    "replace_me",
    "replace-me",
    "replaceme",
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "example",
    "your-token",
    "your_token",
    "secret-token",
    "<token>",
    "xxxxxxxx",
];

/// How to make a token that passes, printed with every refusal.
pub const HOW_TO_MAKE_ONE: &str =
    "make one with `openssl rand -hex 32` (or `head -c 32 /dev/urandom | base64`)";

/// Checks a token named `name` (for the message, e.g. `POET_CLIENT_TOKEN`). The error says
/// what is wrong and how to make a good one; it never repeats the token.
pub fn check_token(name: &str, token: &str) -> Result<(), String> {
    let lower = token.to_ascii_lowercase();
    if let Some(p) = PLACEHOLDERS.iter().find(|p| lower.contains(*p)) {
        return Err(format!(
            "{name} is a placeholder (it contains `{p}`); {HOW_TO_MAKE_ONE}"
        ));
    }
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(format!(
            "{name} must be at least {MIN_TOKEN_CHARS} random characters, got {chars}; {HOW_TO_MAKE_ONE}"
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{name} must not contain spaces or control characters; {HOW_TO_MAKE_ONE}"
        ));
    }
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT_CHARS {
        return Err(format!(
            "{name} does not look random ({} distinct characters); {HOW_TO_MAKE_ONE}",
            distinct.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_examples_placeholders_are_refused() {
        for t in [
            "REPLACE_ME-client-token-openssl-rand-hex-32",
            "REPLACE_ME-worker-token-openssl-rand-hex-32",
            "changeme-changeme-changeme-changeme-1234",
            "my-example-token-0123456789abcdef0123456789",
        ] {
            let e = check_token("POET_CLIENT_TOKEN", t).unwrap_err();
            assert!(e.contains("placeholder"), "{t}: {e}");
            assert!(e.contains("openssl rand -hex 32"), "says how: {e}");
            assert!(!e.contains(t), "never repeats the token: {e}");
        }
    }

    #[test]
    fn short_and_repetitive_tokens_are_refused_random_ones_pass() {
        let e = check_token("POET_WORKER_TOKEN", "worker-token-0123456789").unwrap_err();
        assert!(e.contains("at least 32") && e.contains("got 23"), "{e}");
        let e = check_token("t", &"ab".repeat(20)).unwrap_err();
        assert!(e.contains("does not look random"), "{e}");
        let e = check_token("t", "0123456789abcdef 0123456789abcdef").unwrap_err();
        assert!(e.contains("spaces"), "{e}");
        // `openssl rand -hex 32` and base64 of 32 random bytes.
        check_token(
            "t",
            "9f2c4e81a07d3b56c2e9f41a8b7d06e35c1f9a2b4d8e7f60a1b2c3d4e5f60718",
        )
        .unwrap();
        check_token("t", "q3Zr8Kx1VbN0mT7yLw2Pj5Hs9Gd4Fc6Ae+Ui/Oo1Ty0=").unwrap();
    }
}
