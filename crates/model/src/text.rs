//! Text cut or wrapped to the columns it has on a terminal: the one way long text is
//! shortened, for the screen and for every line the pipeline writes; the one way it is
//! broken into lines; and the one way a duration is said.

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

/// Cuts `text` to at most `width` columns like [`fit`], but never inside a number: a cut
/// that would fall between two of its characters goes back to where the number starts, so
/// that `pid 16566` never reads `pid 165…` nor `port=5432` `port=54…`, numbers that are not
/// the ones there were. A number is a run of digits with the `.`, `,` and `:` between them.
pub fn fit_whole_numbers(text: &str, width: usize) -> String {
    let cut = fit(text, width);
    let Some(kept) = cut.strip_suffix('…') else {
        return cut;
    };
    let numeric = |c: char| c.is_ascii_digit() || matches!(c, '.' | ',' | ':');
    let before = kept.chars().next_back();
    let after = text[kept.len()..].chars().next();
    let inside = matches!((before, after), (Some(b), Some(a)) if numeric(b) && numeric(a))
        && (before.is_some_and(|c| c.is_ascii_digit())
            || after.is_some_and(|c| c.is_ascii_digit()));
    if !inside {
        return cut;
    }
    let start = kept
        .char_indices()
        .rev()
        .take_while(|(_, c)| numeric(*c))
        .last()
        .map_or(kept.len(), |(i, _)| i);
    format!("{}…", &kept[..start])
}

/// Joins `parts`, most important first, with `separator` while they fit in `width`
/// columns; the first that does not fit and those after it are left out whole: a part is
/// never cut.
pub fn fit_parts(parts: &[String], separator: &str, width: usize) -> String {
    let mut out = String::new();
    for part in parts {
        let sep = if out.is_empty() { "" } else { separator };
        if width_of(&out) + width_of(sep) + width_of(part) > width {
            break;
        }
        out.push_str(sep);
        out.push_str(part);
    }
    out
}

/// Columns `text` takes on a terminal.
pub fn width_of(text: &str) -> usize {
    text.width()
}

/// `text` broken into lines of at most `width` columns: at spaces where it can, inside a
/// word only when the word is longer than a line. Every line keeps the indentation the text
/// starts with (when it leaves room for text), so that a wrapped item stays under its
/// heading. Spaces inside a line are kept as they are; an empty text is one empty line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let body = text.trim_start_matches(' ');
    let indent = text.len() - body.len();
    let indent = if indent * 2 <= width { indent } else { 0 };
    let room = width - indent;
    let pad = " ".repeat(indent);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    for (spaces, word) in words(body) {
        let (space_w, word_w) = (width_of(spaces), width_of(word));
        if used > 0 && used + space_w + word_w <= room {
            line.push_str(spaces);
            line.push_str(word);
            used += space_w + word_w;
            continue;
        }
        if used > 0 {
            lines.push(format!("{pad}{line}"));
            line.clear();
            used = 0;
        }
        // A word longer than a line is broken where each line ends.
        let mut buf = [0u8; 4];
        for c in word.chars() {
            let w = width_of(c.encode_utf8(&mut buf));
            if used > 0 && used + w > room {
                lines.push(format!("{pad}{line}"));
                line.clear();
                used = 0;
            }
            line.push(c);
            used += w;
        }
    }
    if used > 0 || lines.is_empty() {
        lines.push(format!("{pad}{line}"));
    }
    lines
}

/// The words of `text`, each with the spaces before it.
fn words(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let body = rest.trim_start_matches(' ');
        if body.is_empty() {
            return None;
        }
        let spaces = &rest[..rest.len() - body.len()];
        let end = body.find(' ').unwrap_or(body.len());
        rest = &body[end..];
        Some((spaces, &body[..end]))
    })
}

/// A duration for people: milliseconds under a second (`5.2ms`, `704ms`), seconds under a
/// minute (`1.5s`, `44.0s`), then minutes and seconds (`11m 44s`), hours and minutes
/// (`2h 05m`), days and hours (`3d 04h`).
pub fn duration_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "-".to_owned();
    }
    if ms < 10.0 {
        return format!("{ms:.1}ms");
    }
    if ms < 999.5 {
        return format!("{ms:.0}ms");
    }
    let seconds = ms / 1000.0;
    if seconds < 59.95 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds.round() as u64;
    let (minutes, hours, days) = (whole / 60, whole / 3600, whole / 86_400);
    if hours == 0 {
        format!("{minutes}m {:02}s", whole % 60)
    } else if days == 0 {
        format!("{hours}h {:02}m", minutes % 60)
    } else {
        format!("{days}d {:02}h", hours % 24)
    }
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

    #[test]
    fn fit_whole_numbers_leaves_a_number_out_rather_than_cut_it() {
        assert_eq!(
            fit_whole_numbers("pid 16566 on events", 30),
            "pid 16566 on events"
        );
        assert_eq!(fit_whole_numbers("pid 16566 on events", 8), "pid …");
        assert_eq!(
            fit_whole_numbers("pid 16566 on events", 13),
            "pid 16566 on…"
        );
        assert_eq!(fit_whole_numbers("received 106", 11), "received …");
        assert_eq!(
            fit_whole_numbers("host=127.0.0.1 port=5432 user=x", 23),
            "host=127.0.0.1 port=…"
        );
        assert_eq!(fit_whole_numbers("inserted 704464.0ms", 16), "inserted …");
        assert_eq!(fit_whole_numbers("at 10:00:01 now", 8), "at …");
        // Text is cut where it is: only numbers go back.
        assert_eq!(
            fit_whole_numbers("waiting for the listener", 10),
            "waiting f…"
        );
        assert_eq!(
            fit_whole_numbers("notifyscope-pg-DGdKr7x", 20),
            "notifyscope-pg-DGdK…"
        );
        assert_eq!(fit_whole_numbers("1.5s, then", 5), "1.5s…");
    }

    #[test]
    fn fit_parts_drops_whole_parts() {
        let parts = ["✗ 1 failing", "? 17 unknown", "✓ 6 ok"].map(String::from);
        assert_eq!(
            fit_parts(&parts, " · ", 40),
            "✗ 1 failing · ? 17 unknown · ✓ 6 ok"
        );
        assert_eq!(fit_parts(&parts, " · ", 30), "✗ 1 failing · ? 17 unknown");
        assert_eq!(fit_parts(&parts, " · ", 22), "✗ 1 failing");
        assert_eq!(fit_parts(&parts, " · ", 5), "");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_keeps_the_indentation() {
        assert_eq!(
            wrap("Fix: end or commit the session holding the lock", 20),
            ["Fix: end or commit", "the session holding", "the lock"]
        );
        assert_eq!(
            wrap(
                "  pid 77 waits for RowExclusiveLock on discord_messages",
                24
            ),
            [
                "  pid 77 waits for",
                "  RowExclusiveLock on",
                "  discord_messages"
            ]
        );
        // A word longer than a line is broken where the line ends.
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("short", 10), ["short"]);
        // Spaces inside a line stay: columns of a table keep their places.
        assert_eq!(wrap("a    b", 10), ["a    b"]);
        // Every line fits, whatever the width.
        let text = "  the quick brown fox jumps over the lazy dog 🦀🦀 1577650181380820992";
        for width in 1..40 {
            for line in wrap(text, width) {
                assert!(width_of(&line) <= width.max(2), "{width}: {line:?}");
            }
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_ms(0.42), "0.4ms");
        assert_eq!(duration_ms(5.0), "5.0ms");
        assert_eq!(duration_ms(704.4), "704ms");
        assert_eq!(duration_ms(1_520.0), "1.5s");
        assert_eq!(duration_ms(44_000.0), "44.0s");
        assert_eq!(duration_ms(704_464.0), "11m 44s");
        assert_eq!(duration_ms(7_530_000.0), "2h 05m");
        assert_eq!(
            duration_ms(3.0 * 86_400_000.0 + 4.0 * 3_600_000.0),
            "3d 04h"
        );
        assert_eq!(duration_ms(f64::NAN), "-");
    }
}
