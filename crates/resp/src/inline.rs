//! Splitting an inline command line into arguments, with Redis's quoting rules (`sdssplitargs`).

/// Splits a line into arguments: whitespace separates them; `"..."` quotes with `\n`, `\r`, `\t`, `\b`,
/// `\a`, `\xHH` and `\<char>` escapes; `'...'` quotes with only `\'` escaped. A closing quote must be
/// followed by whitespace or the end of the line. Returns `None` for unbalanced quotes.
///
/// ```
/// use strata_resp::split_args;
/// let args = split_args(br#"SET "a\x41\n" 'it\'s' plain"#).unwrap();
/// assert_eq!(args, vec![b"SET".to_vec(), b"aA\n".to_vec(), b"it's".to_vec(), b"plain".to_vec()]);
/// assert!(split_args(b"GET \"unterminated").is_none());
/// ```
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|b| is_space(*b)) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let Some(&c) = line.get(i) else {
                if in_double || in_single {
                    return None;
                }
                break;
            };
            if in_double {
                if c == b'\\'
                    && line.get(i + 1) == Some(&b'x')
                    && let (Some(hi), Some(lo)) = (
                        line.get(i + 2).and_then(|b| hex(*b)),
                        line.get(i + 3).and_then(|b| hex(*b)),
                    )
                {
                    current.push(hi * 16 + lo);
                    i += 4;
                    continue;
                }
                if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    current.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    // The closing quote must end the argument.
                    if line.get(i + 1).is_some_and(|b| !is_space(*b)) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    i += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|b| !is_space(*b)) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(c),
                }
            }
            i += 1;
        }
        args.push(current);
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Option<Vec<String>> {
        split_args(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    }

    #[test]
    fn redis_quoting_rules() {
        assert_eq!(
            split("  a  b\tc "),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(split(r#""a b" c"#), Some(vec!["a b".into(), "c".into()]));
        assert_eq!(split(r#""\x4a\x4B\xzz""#), Some(vec!["JKxzz".into()]));
        assert_eq!(split(r#""tab\there""#), Some(vec!["tab\there".into()]));
        assert_eq!(
            split(r"'a\'b' 'c\d'"),
            Some(vec!["a'b".into(), r"c\d".into()])
        );
        assert_eq!(
            split(r#"key"quoted part""#),
            Some(vec!["keyquoted part".into()])
        );
        assert_eq!(split(r#""" ''"#), Some(vec![String::new(), String::new()]));
        assert_eq!(split(""), Some(vec![]));
    }

    #[test]
    fn unbalanced_or_glued_quotes_fail() {
        assert_eq!(split(r#""abc"#), None);
        assert_eq!(split("'abc"), None);
        assert_eq!(split(r#""abc"def"#), None);
        assert_eq!(split("'abc'def"), None);
        assert_eq!(split(r#""abc\"#), None);
    }
}
