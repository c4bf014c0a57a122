//! What the Say applications play: the files that say digits, letters and numbers, as
//! Asterisk's say.c names them (`digits/1`, `digits/hundred`, `letters/a`, ...). The files are
//! looked up in the channel's language folder, so the same names speak each language; the
//! number rules differ per language and are chosen by the language's code.

/// The files that say `text` digit by digit (Asterisk's `ast_say_digit_str`).
pub fn digit_files(text: &str) -> Vec<String> {
    text.chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(format!("digits/{c}")),
            '*' => Some("digits/star".to_owned()),
            '#' => Some("digits/pound".to_owned()),
            '-' => Some("letters/dash".to_owned()),
            _ => None,
        })
        .collect()
}

/// The files that spell `text` (Asterisk's `ast_say_character_str`).
pub fn alpha_files(text: &str) -> Vec<String> {
    text.chars()
        .filter_map(|c| match c.to_ascii_lowercase() {
            'a'..='z' => Some(format!("letters/{}", c.to_ascii_lowercase())),
            '0'..='9' | '*' | '#' | '-' => digit_files(&c.to_string()).pop(),
            '@' => Some("letters/at".to_owned()),
            '.' => Some("letters/dot".to_owned()),
            ' ' => Some("letters/space".to_owned()),
            _ => None,
        })
        .collect()
}

/// The files that say `number` in English (Asterisk's `ast_say_number_full_en`: "minus",
/// 0–19, tens, "hundred", then thousands, millions and billions said recursively).
pub fn number_files(number: i64) -> Vec<String> {
    let mut files = Vec::new();
    if number == 0 {
        return vec!["digits/0".into()];
    }
    if number < 0 {
        files.push("digits/minus".into());
    }
    let mut num = number.unsigned_abs();
    let mut hundred = false;
    while num > 0 || hundred {
        if hundred {
            files.push("digits/hundred".into());
            hundred = false;
        } else if num < 20 {
            files.push(format!("digits/{num}"));
            num = 0;
        } else if num < 100 {
            files.push(format!("digits/{}", num / 10 * 10));
            num %= 10;
        } else if num < 1000 {
            files.push(format!("digits/{}", num / 100));
            hundred = true;
            num %= 100;
        } else {
            let (unit, word) = if num < 1_000_000 {
                (1_000, "digits/thousand")
            } else if num < 1_000_000_000 {
                (1_000_000, "digits/million")
            } else {
                (1_000_000_000, "digits/billion")
            };
            files.extend(number_files((num / unit) as i64));
            files.push(word.into());
            num %= unit;
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_said_as_asterisk_says_them_in_english() {
        let said = |n| {
            number_files(n).iter().map(|f| f.trim_start_matches("digits/").to_owned()).collect::<Vec<_>>().join(" ")
        };
        assert_eq!(said(0), "0");
        assert_eq!(said(7), "7");
        assert_eq!(said(19), "19");
        assert_eq!(said(20), "20");
        assert_eq!(said(42), "40 2");
        assert_eq!(said(100), "1 hundred");
        assert_eq!(said(115), "1 hundred 15");
        assert_eq!(said(999), "9 hundred 90 9");
        assert_eq!(said(1000), "1 thousand");
        assert_eq!(said(2024), "2 thousand 20 4");
        assert_eq!(said(123_456), "1 hundred 20 3 thousand 4 hundred 50 6");
        assert_eq!(said(5_000_001), "5 million 1");
        assert_eq!(said(-3), "minus 3");
        assert_eq!(said(3_000_000_000), "3 billion");
    }

    #[test]
    fn digits_and_letters_name_their_files() {
        assert_eq!(digit_files("12*#"), ["digits/1", "digits/2", "digits/star", "digits/pound"]);
        assert_eq!(alpha_files("Ab1"), ["letters/a", "letters/b", "digits/1"]);
    }
}
