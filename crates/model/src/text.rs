//! Text cut to the columns it has on a terminal: the one way long text is shortened, for the
//! screen and for every line the pipeline writes.

use unicode_width::UnicodeWidthStr;

/// Cuts `text` to at most `width` columns, marking the cut with `…`.
pub fn fit(text: &str, width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    if width_of(text) <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let w = width_of(c.encode_utf8(&mut buf));
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Columns `text` takes on a terminal.
pub fn width_of(text: &str) -> usize {
    text.width()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("hello", 10), "hello");
        assert_eq!(fit("hello world", 6), "hello…");
        assert_eq!(fit("🦀🦀🦀", 4), "🦀…");
        assert_eq!(fit("abc", 0), "");
    }
}
