//! Themes are data: one TOML table a named style, embedded for the built-in ones. `NO_COLOR`
//! (and `--no-color`) are applied here, once, so no widget needs to know about them.

use std::path::Path;
use std::str::FromStr;

use notifyscope_widgets::Styles;
use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

pub const BUILTIN: [(&str, &str); 3] = [
    ("dark", include_str!("../themes/dark.toml")),
    ("light", include_str!("../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../themes/high-contrast.toml"),
    ),
];

pub const DEFAULT_THEME: &str = "dark";

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("no theme named {0:?} (built in: dark, light, high-contrast) and no such file")]
    Unknown(String),
    #[error("cannot read theme file {path}: {error}")]
    Read { path: String, error: String },
    #[error("theme {name}: {error}")]
    Invalid { name: String, error: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleDef {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    dim: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
}

/// Every named style; all are required so that a theme file is complete.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    text: StyleDef,
    dim: StyleDef,
    border: StyleDef,
    border_focused: StyleDef,
    title: StyleDef,
    title_focused: StyleDef,
    header: StyleDef,
    selected: StyleDef,
    followed: StyleDef,
    error: StyleDef,
    warn: StyleDef,
    ok: StyleDef,
    status_bar: StyleDef,
    key: StyleDef,
    toast: StyleDef,
    overlay: StyleDef,
    sparkline: StyleDef,
}

fn color(name: &str, value: &Option<String>) -> Result<Option<Color>, String> {
    value
        .as_deref()
        .map(|v| Color::from_str(v).map_err(|_| format!("{name}: unknown colour {v:?}")))
        .transpose()
}

fn style(name: &str, def: &StyleDef, colour: bool) -> Result<Style, String> {
    let mut style = Style::default();
    // Colours are checked even when unused, so that a broken theme fails the same way
    // with or without NO_COLOR.
    let fg = color(name, &def.fg)?;
    let bg = color(name, &def.bg)?;
    if colour {
        if let Some(fg) = fg {
            style = style.fg(fg);
        }
        if let Some(bg) = bg {
            style = style.bg(bg);
        }
    }
    let mut modifiers = Modifier::empty();
    for (on, m) in [
        (def.bold, Modifier::BOLD),
        (def.dim, Modifier::DIM),
        (def.italic, Modifier::ITALIC),
        (def.underline, Modifier::UNDERLINED),
        (def.reversed, Modifier::REVERSED),
    ] {
        if on {
            modifiers |= m;
        }
    }
    Ok(style.add_modifier(modifiers))
}

/// Parses a theme; without colour, highlights that relied on a background fall back to
/// reverse video so that selection stays visible.
pub fn parse(name: &str, text: &str, colour: bool) -> Result<Styles, ThemeError> {
    let invalid = |error: String| ThemeError::Invalid {
        name: name.to_owned(),
        error,
    };
    let t: ThemeFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let s = |n: &str, d: &StyleDef| style(n, d, colour).map_err(invalid);
    let mut styles = Styles {
        text: s("text", &t.text)?,
        dim: s("dim", &t.dim)?,
        border: s("border", &t.border)?,
        border_focused: s("border_focused", &t.border_focused)?,
        title: s("title", &t.title)?,
        title_focused: s("title_focused", &t.title_focused)?,
        header: s("header", &t.header)?,
        selected: s("selected", &t.selected)?,
        followed: s("followed", &t.followed)?,
        error: s("error", &t.error)?,
        warn: s("warn", &t.warn)?,
        ok: s("ok", &t.ok)?,
        status_bar: s("status_bar", &t.status_bar)?,
        key: s("key", &t.key)?,
        toast: s("toast", &t.toast)?,
        overlay: s("overlay", &t.overlay)?,
        sparkline: s("sparkline", &t.sparkline)?,
    };
    if !colour {
        styles.selected = styles.selected.add_modifier(Modifier::REVERSED);
        styles.followed = styles.followed.add_modifier(Modifier::UNDERLINED);
        styles.key = styles.key.add_modifier(Modifier::REVERSED);
        styles.toast = styles.toast.add_modifier(Modifier::REVERSED);
        styles.status_bar = styles.status_bar.add_modifier(Modifier::REVERSED);
        styles.error = styles.error.add_modifier(Modifier::BOLD);
    }
    Ok(styles)
}

/// `NO_COLOR` set to anything non-empty turns colour off (no-color.org).
pub fn colour_wanted(no_color_flag: bool) -> bool {
    !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A built-in theme by name, or a theme file by path.
pub fn load(name_or_path: &str, colour: bool) -> Result<Styles, ThemeError> {
    if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        return parse(name, text, colour);
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(ThemeError::Unknown(name_or_path.to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| ThemeError::Read {
        path: name_or_path.to_owned(),
        error: e.to_string(),
    })?;
    parse(name_or_path, &text, colour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_theme_parses_with_and_without_colour() {
        for (name, text) in BUILTIN {
            let styles = parse(name, text, true).unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(styles.error, Style::default(), "{name}");
            let plain = parse(name, text, false).unwrap_or_else(|e| panic!("{e}"));
            for s in [plain.text, plain.error, plain.selected, plain.status_bar] {
                assert_eq!(s.fg, None, "{name}");
                assert_eq!(s.bg, None, "{name}");
            }
            assert!(plain.selected.add_modifier.contains(Modifier::REVERSED));
        }
    }

    #[test]
    fn theme_files_in_the_folder_are_all_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("themes folder")
            .filter_map(|e| e.ok())
            .map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .trim_end_matches(".toml")
                    .to_owned()
            })
            .collect();
        files.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        builtin.sort();
        assert_eq!(files, builtin);
    }

    #[test]
    fn broken_themes_are_clear_errors() {
        let missing = parse("t", "text = {}", true).expect_err("incomplete");
        assert!(missing.to_string().contains("missing field"), "{missing}");
        let full = BUILTIN[0].1.replace("lightred", "reddish");
        let colour = parse("t", &full, true).expect_err("bad colour");
        assert!(
            colour.to_string().contains("unknown colour \"reddish\""),
            "{colour}"
        );
        assert!(matches!(load("nope", true), Err(ThemeError::Unknown(_))));
    }
}
