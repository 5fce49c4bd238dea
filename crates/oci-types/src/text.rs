//! Text from outside (a registry's or a daemon's error message) made safe for a terminal.

/// `text`, with its control characters shown escaped (`\u{1b}`): escape sequences a registry
/// or a daemon put in a message could otherwise rewrite what the user sees, move the cursor or
/// set the terminal's title. Line breaks and tabs stay, since errors come in several lines.
pub fn printable(text: &str) -> String {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_lines_kept() {
        assert_eq!(printable("plain: ok"), "plain: ok");
        assert_eq!(printable("a\n\tb"), "a\n\tb");
        assert_eq!(printable("\u{1b}[2Jgone\r\n"), "\\u{1b}[2Jgone\\r\n");
        assert_eq!(printable("\u{1b}]0;title\u{7}"), "\\u{1b}]0;title\\u{7}");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m", "the 8-bit CSI too");
    }
}
