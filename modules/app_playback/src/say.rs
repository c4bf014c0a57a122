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

const THOUSAND: u64 = 1_000;
const MILLION: u64 = 1_000_000;
const BILLION: u64 = 1_000_000_000;

/// The file `digits/{name}`.
fn digit(name: impl std::fmt::Display) -> String {
    format!("digits/{name}")
}

/// Whether say.c's `options` argument (here `gender`) starts with `letter`, compared as say.c
/// does with `strncasecmp(options, "f", 1)`.
fn option_is(gender: Option<&str>, letter: char) -> bool {
    gender.and_then(|g| g.chars().next()).is_some_and(|c| c.eq_ignore_ascii_case(&letter))
}

/// The files that say `number` in `language` (Asterisk's `ast_say_number_full`).
///
/// The rules are chosen by the start of the language's code, compared without regard to case as
/// say.c does (`de`, `de_DE` and `DE_at` all speak German; `en_GB` is tried before `en`; the
/// deprecated `mx` speaks Spanish); languages say.c does not know, and those whose rules are not
/// written here, speak English. `gender` is say.c's `options` argument, read by its first letter:
/// `f` (feminine) for de, es, fr and pt, `m` (masculine) for es, `n` (neuter) or `c` (common) for
/// da, no and se; languages that have no use for it ignore it.
///
/// Zero is `digits/0` and a negative number starts with `digits/minus` in every language. say.c
/// works on a C `int` and gives up past the largest word it knows; here the largest word just
/// takes larger multipliers (German "3 thousand milliards", French "2 thousand million").
pub fn number_files(number: i64, language: &str, gender: Option<&str>) -> Vec<String> {
    if number == 0 {
        return vec![digit(0)];
    }
    let mut files = Vec::new();
    if number < 0 {
        files.push(digit("minus"));
    }
    let num = number.unsigned_abs();
    let is = |code: &str| language.get(..code.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(code));
    if is("en_GB") {
        number_en_gb(num, &mut files);
    } else if is("en") {
        number_en(num, &mut files);
    } else if is("da") {
        number_da(num, gender, &mut files);
    } else if is("de") {
        number_de(num, gender, &mut files);
    } else if is("es") || is("mx") {
        number_es(num, gender, &mut files);
    } else if is("fr") {
        number_fr(num, gender, &mut files);
    } else if is("it") {
        number_it(num, &mut files);
    } else if is("nl") {
        number_nl(num, &mut files);
    } else if is("no") {
        number_no(num, gender, &mut files);
    } else if is("pt") {
        number_pt(num, gender, &mut files);
    } else if is("se") {
        // say.c's loop counts "minus" as its first step, so a negative number loses the
        // "hundred, not one hundred" rule that only the first step applies.
        number_se(num, gender, number > 0, &mut files);
    } else {
        number_en(num, &mut files);
    }
    files
}

/// English, after say.c's `ast_say_number_full_en`: 0–19, tens, "hundred", then thousands,
/// millions and (past say.c, which stops there) billions said recursively.
fn number_en(mut num: u64, files: &mut Vec<String>) {
    let mut hundred = false;
    while num > 0 || hundred {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if num < 20 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            files.push(digit(num / 10 * 10));
            num %= 10;
        } else if num < THOUSAND {
            files.push(digit(num / 100));
            hundred = true;
            num %= 100;
        } else {
            let (unit, word) = if num < MILLION {
                (THOUSAND, "thousand")
            } else if num < BILLION {
                (MILLION, "million")
            } else {
                (BILLION, "billion")
            };
            number_en(num / unit, files);
            files.push(digit(word));
            num %= unit;
        }
    }
}

/// British English, after say.c's `ast_say_number_full_en_GB`: English with `digits/and` after
/// "hundred" when something follows, and after "thousand" or "million" when 1–99 follows.
fn number_en_gb(mut num: u64, files: &mut Vec<String>) {
    let (mut hundred, mut and) = (false, false);
    while num > 0 || hundred || and {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if and {
            files.push(digit("and"));
            and = false;
        } else if num < 20 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            files.push(digit(num / 10 * 10));
            num %= 10;
        } else if num < THOUSAND {
            files.push(digit(num / 100));
            hundred = true;
            num %= 100;
            and = num > 0;
        } else {
            let (unit, word) = if num < MILLION { (THOUSAND, "thousand") } else { (MILLION, "million") };
            number_en_gb(num / unit, files);
            files.push(digit(word));
            num %= unit;
            and = num > 0 && num < 100;
        }
    }
}

/// Danish, after say.c's `ast_say_number_full_da`: 21 is `digits/1-and` `digits/20`, one
/// hundred and one thousand are `digits/1N`, a lone one is `digits/1N` for gender `n`,
/// `digits/and` follows "hundred" when something follows and "thousand"/"million" when 1–99
/// follows, and more than one million is `digits/millions`.
fn number_da(mut num: u64, gender: Option<&str>, files: &mut Vec<String>) {
    let neuter = option_is(gender, 'n');
    let (mut hundred, mut and) = (false, false);
    while num > 0 || hundred || and {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if and {
            files.push(digit("and"));
            and = false;
        } else if num == 1 && neuter {
            files.push(digit("1N"));
            num = 0;
        } else if num < 20 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            let ones = num % 10;
            if ones > 0 {
                files.push(digit(format!("{ones}-and")));
                num -= ones;
            } else {
                files.push(digit(num));
                num = 0;
            }
        } else if num < THOUSAND {
            let hundreds = num / 100;
            files.push(if hundreds == 1 { digit("1N") } else { digit(hundreds) });
            hundred = true;
            num %= 100;
            and = num > 0;
        } else {
            if num < MILLION {
                number_da(num / THOUSAND, Some("n"), files);
                files.push(digit("thousand"));
                num %= THOUSAND;
            } else {
                let millions = num / MILLION;
                number_da(millions, Some("c"), files);
                files.push(digit(if millions == 1 { "million" } else { "millions" }));
                num %= MILLION;
            }
            and = num > 0 && num < 100;
        }
    }
}

/// German, after say.c's `ast_say_number_full_de`: 21 is `digits/1-and` `digits/20`; a lone 100
/// or 1000 is just `digits/hundred` or `digits/thousand`, otherwise "ein hundert"/"ein tausend"
/// use `digits/1N`; one million and one milliard use `digits/1F`; more than one is
/// `digits/millions` or `digits/milliards`; no "and" after the hundreds. Gender `f` says a lone
/// one as `digits/1F` (say.c reads no other gender here: "1" is recorded as "eins").
fn number_de(mut num: u64, gender: Option<&str>, files: &mut Vec<String>) {
    let female = option_is(gender, 'f');
    // say.c's `t`: a thousand or more has been said, so 100 and 1000 are "ein hundert/tausend".
    let mut after_thousands = false;
    while num > 0 {
        if num == 1 && female {
            files.push(digit("1F"));
            num = 0;
        } else if num < 20 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            let ones = num % 10;
            if ones > 0 {
                files.push(digit(format!("{ones}-and")));
                num -= ones;
            } else {
                files.push(digit(num));
                num = 0;
            }
        } else if num == 100 && !after_thousands {
            files.push(digit("hundred"));
            num = 0;
        } else if num < THOUSAND {
            let hundreds = num / 100;
            files.push(if hundreds == 1 { digit("1N") } else { digit(hundreds) });
            files.push(digit("hundred"));
            num %= 100;
        } else if num == THOUSAND && !after_thousands {
            files.push(digit("thousand"));
            num = 0;
        } else {
            let (unit, one, singular, plural) = if num < MILLION {
                (THOUSAND, "1N", "thousand", "thousand")
            } else if num < BILLION {
                (MILLION, "1F", "million", "millions")
            } else {
                (BILLION, "1F", "milliard", "milliards")
            };
            let count = num / unit;
            num %= unit;
            after_thousands = true;
            if count == 1 {
                files.push(digit(one));
                files.push(digit(singular));
            } else {
                number_de(count, gender, files);
                files.push(digit(plural));
            }
        }
    }
}

/// Spanish, after say.c's `ast_say_number_full_es`: single files up to 30 (`digits/21`...),
/// then tens `digits/and` ones; 100 is `digits/100` ("cien") and 101–199 start with
/// `digits/100-and` ("ciento"); other hundreds are `digits/200`...`digits/900`; 1000–1999 start
/// with a bare `digits/thousand`; one million is `digits/1M` `digits/million`, more is
/// `digits/millions`. Gender `f` says a lone one as `digits/1F`, `m` as `digits/1M`.
fn number_es(mut num: u64, gender: Option<&str>, files: &mut Vec<String>) {
    let one = if option_is(gender, 'f') {
        "1F"
    } else if option_is(gender, 'm') {
        "1M"
    } else {
        "1"
    };
    let mut and = false;
    while num > 0 {
        if and {
            files.push(digit("and"));
            and = false;
        } else if num == 1 {
            files.push(digit(one));
            num = 0;
        } else if num < 31 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            files.push(digit(num / 10 * 10));
            num %= 10;
            and = num > 0;
        } else if num == 100 {
            files.push(digit(100));
            num = 0;
        } else if num < 200 {
            files.push(digit("100-and"));
            num -= 100;
        } else if num < THOUSAND {
            files.push(digit(num / 100 * 100));
            num %= 100;
        } else if num < 2 * THOUSAND {
            files.push(digit("thousand"));
            num %= THOUSAND;
        } else if num < MILLION {
            number_es(num / THOUSAND, gender, files);
            files.push(digit("thousand"));
            num %= THOUSAND;
        } else {
            let millions = num / MILLION;
            if millions == 1 {
                number_es(millions, Some("M"), files);
                files.push(digit("million"));
            } else {
                number_es(millions, gender, files);
                files.push(digit("millions"));
            }
            num %= MILLION;
        }
    }
}

/// French, after say.c's `ast_say_number_full_fr`: 21, 31...61 and 71 put `digits/et` after
/// the tens; 70–79 are `digits/60` then 10–19, 80–99 are `digits/80` then 1–19; 100–199 and
/// 1000–1999 start with a bare `digits/hundred` or `digits/thousand`; no plural files. Gender
/// `f` says a lone one as `digits/1F`.
fn number_fr(mut num: u64, gender: Option<&str>, files: &mut Vec<String>) {
    let female = option_is(gender, 'f');
    let (mut hundred, mut and) = (false, false);
    while num > 0 || hundred || and {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if and {
            files.push(digit("et"));
            and = false;
        } else if num == 1 {
            files.push(digit(if female { "1F" } else { "1" }));
            num = 0;
        } else if num < 21 {
            files.push(digit(num));
            num = 0;
        } else if num < 70 {
            files.push(digit(num / 10 * 10));
            and = num % 10 == 1;
            num %= 10;
        } else if num < 80 {
            files.push(digit(60));
            and = num % 10 == 1;
            num -= 60;
        } else if num < 100 {
            files.push(digit(80));
            num -= 80;
        } else if num < 200 {
            files.push(digit("hundred"));
            num -= 100;
        } else if num < THOUSAND {
            files.push(digit(num / 100));
            hundred = true;
            num %= 100;
        } else if num < 2 * THOUSAND {
            files.push(digit("thousand"));
            num -= THOUSAND;
        } else {
            let (unit, word) = if num < MILLION { (THOUSAND, "thousand") } else { (MILLION, "million") };
            number_fr(num / unit, gender, files);
            files.push(digit(word));
            num %= unit;
        }
    }
}

/// Italian, after say.c's `ast_say_number_full_it`: the tens that drop their vowel before "uno"
/// and "otto" have their own files (`digits/21`, `digits/28`, ... `digits/98`); 100–199 start
/// with a bare `digits/hundred` ("cento"), 1000–1999 with a bare `digits/thousand` ("mille"),
/// more thousands are `digits/thousands` ("mila"); one million is a bare `digits/million`
/// ("un milione"), more is `digits/millions`.
fn number_it(mut num: u64, files: &mut Vec<String>) {
    let mut hundred = false;
    while num > 0 || hundred {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if num < 20 || (num < 100 && matches!(num % 10, 1 | 8)) {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            files.push(digit(num / 10 * 10));
            num %= 10;
        } else if num < THOUSAND {
            if num / 100 > 1 {
                files.push(digit(num / 100));
                hundred = true;
            } else {
                files.push(digit("hundred"));
            }
            num %= 100;
        } else {
            let (unit, singular, plural) =
                if num < MILLION { (THOUSAND, "thousand", "thousands") } else { (MILLION, "million", "millions") };
            let count = num / unit;
            if count > 1 {
                number_it(count, files);
            }
            files.push(digit(if count < 2 { singular } else { plural }));
            num %= unit;
        }
    }
}

/// Dutch, after say.c's `ast_say_number_full_nl`: 21 is `digits/1` `digits/nl-en` `digits/20`;
/// 100–199 start with a bare `digits/hundred`, 1000–1099 with a bare `digits/thousand`;
/// 1100–9999 are said in hundreds ("twaalfhonderd": `digits/12` `digits/hundred`).
fn number_nl(mut num: u64, files: &mut Vec<String>) {
    let mut hundred = false;
    while num > 0 || hundred {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if num < 20 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            let units = num % 10;
            if units > 0 {
                number_nl(units, files);
                files.push(digit("nl-en"));
                num -= units;
            } else {
                files.push(digit(num));
                num = 0;
            }
        } else if num < 200 {
            files.push(digit("hundred"));
            num %= 100;
        } else if num < THOUSAND {
            files.push(digit(num / 100));
            hundred = true;
            num %= 100;
        } else if num < 1_100 {
            files.push(digit("thousand"));
            num %= THOUSAND;
        } else {
            let (unit, word) = if num < 10_000 {
                (100, "hundred")
            } else if num < MILLION {
                (THOUSAND, "thousand")
            } else {
                (MILLION, "million")
            };
            number_nl(num / unit, files);
            files.push(digit(word));
            num %= unit;
        }
    }
}

/// Norwegian, after say.c's `ast_say_number_full_no`: English order with `digits/and` after
/// "hundred" when something follows and after "thousand"/"million" when 1–99 follows; one
/// hundred and one thousand are `digits/1N`, and a lone one is `digits/1N` for gender `n`.
fn number_no(mut num: u64, gender: Option<&str>, files: &mut Vec<String>) {
    let neuter = option_is(gender, 'n');
    let (mut hundred, mut and) = (false, false);
    while num > 0 || hundred || and {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if and {
            files.push(digit("and"));
            and = false;
        } else if num == 1 && neuter {
            files.push(digit("1N"));
            num = 0;
        } else if num < 20 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            files.push(digit(num / 10 * 10));
            num %= 10;
        } else if num < THOUSAND {
            let hundreds = num / 100;
            files.push(if hundreds == 1 { digit("1N") } else { digit(hundreds) });
            hundred = true;
            num %= 100;
            and = num > 0;
        } else {
            let (unit, option, word) =
                if num < MILLION { (THOUSAND, "n", "thousand") } else { (MILLION, "c", "million") };
            number_no(num / unit, Some(option), files);
            files.push(digit(word));
            num %= unit;
            and = num > 0 && num < 100;
        }
    }
}

/// Portuguese, after say.c's `ast_say_number_full_pt`: `digits/pt-e` ("e") after tens followed
/// by ones, after hundreds followed by more, and after "mil"/"milhão" when what follows is below
/// 100 or whole hundreds; 100 is `digits/100` ("cem"), 101–199 start with `digits/100E`
/// ("cento"), other hundreds are `digits/200`...; thousands are `digits/1000` (a bare one for
/// 1000–1999), millions `digits/1000000` or plural `digits/1000000S`. Gender `f` says 1 and 2
/// as `digits/1F`/`digits/2F` and the hundreds as `digits/200F`...
fn number_pt(mut num: u64, gender: Option<&str>, files: &mut Vec<String>) {
    let female = option_is(gender, 'f');
    let below_100_or_whole_hundreds = |n: u64| n < 100 || n.is_multiple_of(100);
    while num > 0 {
        let mut and = false;
        if num < 20 {
            files.push(if female && (num == 1 || num == 2) { digit(format!("{num}F")) } else { digit(num) });
            num = 0;
        } else if num < 100 {
            files.push(digit(num / 10 * 10));
            num %= 10;
            and = num > 0;
        } else if num < THOUSAND {
            if num == 100 {
                files.push(digit(100));
            } else if num < 200 {
                files.push(digit("100E"));
            } else {
                let hundreds = num / 100 * 100;
                files.push(if female { digit(format!("{hundreds}F")) } else { digit(hundreds) });
                and = !num.is_multiple_of(100);
            }
            num %= 100;
        } else if num < MILLION {
            if num >= 2 * THOUSAND {
                // say.c passes `(num / 1000) * mf` here, which is negative for gender "f" and so
                // says "minus" before the thousands; the count is said in the feminine instead.
                number_pt(num / THOUSAND, gender, files);
            }
            files.push(digit(1000));
            let rest = num % THOUSAND;
            and = rest > 0 && below_100_or_whole_hundreds(rest);
            num = rest;
        } else {
            number_pt(num / MILLION, gender, files);
            files.push(digit(if num < 2 * MILLION { "1000000" } else { "1000000S" }));
            let rest = num % MILLION;
            let thousands = rest / THOUSAND;
            let below = rest % THOUSAND;
            and = rest > 0
                && ((thousands == 0 && below_100_or_whole_hundreds(below))
                    || (below == 0 && below_100_or_whole_hundreds(thousands)));
            num = rest;
        }
        if and {
            files.push(digit("pt-e"));
        }
    }
}

/// Swedish, after say.c's `ast_say_number_full_se`: English order without "and"; a lone one is
/// `digits/1N` for gender `n`, and then 100–199 at the start are a bare `digits/hundred`;
/// thousands are counted with gender `c` ("ett hundra tusen"), millions with `n`.
fn number_se(mut num: u64, gender: Option<&str>, mut start: bool, files: &mut Vec<String>) {
    let neuter = option_is(gender, 'n');
    let mut hundred = false;
    while num > 0 || hundred {
        if hundred {
            files.push(digit("hundred"));
            hundred = false;
        } else if start && neuter && (100..200).contains(&num) {
            files.push(digit("hundred"));
            num -= 100;
        } else if num == 1 && neuter {
            files.push(digit("1N"));
            num = 0;
        } else if num < 20 {
            files.push(digit(num));
            num = 0;
        } else if num < 100 {
            files.push(digit(num / 10 * 10));
            num %= 10;
        } else if num < THOUSAND {
            files.push(digit(num / 100));
            hundred = true;
            num %= 100;
        } else {
            let (unit, option, word) =
                if num < MILLION { (THOUSAND, "c", "thousand") } else { (MILLION, "n", "million") };
            number_se(num / unit, Some(option), true, files);
            files.push(digit(word));
            num %= unit;
        }
        start = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files `number_files` plays, without their `digits/` folder, joined by spaces.
    fn said(language: &str, gender: Option<&str>, number: i64) -> String {
        number_files(number, language, gender)
            .iter()
            .map(|f| f.strip_prefix("digits/").unwrap_or(f).to_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn numbers_are_said_as_asterisk_says_them_in_english() {
        let said = |n| said("en", None, n);
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
    fn languages_are_chosen_by_the_start_of_their_code() {
        assert_eq!(number_files(21, "de", None), ["digits/1-and", "digits/20"]);
        assert_eq!(said("de_DE", None, 21), "1-and 20");
        assert_eq!(said("DE_at", None, 21), "1-and 20");
        assert_eq!(said("fr_CA", None, 21), "20 et 1");
        assert_eq!(said("es_MX", None, 31), "30 and 1");
        assert_eq!(said("mx", None, 31), "30 and 1");
        assert_eq!(said("pt_BR", None, 21), "20 pt-e 1");
        assert_eq!(said("nl_BE", None, 21), "1 nl-en 20");
        assert_eq!(said("it_IT", None, 2000), "2 thousands");
        assert_eq!(said("en_GB", None, 101), "1 hundred and 1");
        assert_eq!(said("en_gb", None, 101), "1 hundred and 1");
        assert_eq!(said("en_US", None, 101), "1 hundred 1");
        assert_eq!(said("da_DK", None, 21), "1-and 20");
        assert_eq!(said("no", None, 101), "1N hundred and 1");
        assert_eq!(said("se", Some("n"), 1), "1N");
    }

    #[test]
    fn unknown_languages_speak_english() {
        assert_eq!(said("", None, 101), "1 hundred 1");
        assert_eq!(said("xx", None, 42), "40 2");
        assert_eq!(said("d", None, 21), "20 1");
        assert_eq!(said("ru", None, 21), "20 1");
        assert_eq!(said("zz", Some("f"), 1), "1");
    }

    #[test]
    fn zero_and_minus_are_the_same_everywhere() {
        for language in ["en", "en_GB", "da", "de", "es", "fr", "it", "nl", "no", "pt", "se"] {
            assert_eq!(said(language, None, 0), "0", "{language}");
            assert!(said(language, None, -5).starts_with("minus "), "{language}");
        }
        assert_eq!(said("de", None, i64::MIN).split(' ').next(), Some("minus"));
    }

    #[test]
    fn german_follows_ast_say_number_full_de() {
        let de = |n| said("de", None, n);
        assert_eq!(de(1), "1");
        assert_eq!(said("de", Some("f"), 1), "1F");
        assert_eq!(said("de", Some("n"), 1), "1");
        assert_eq!(de(21), "1-and 20");
        assert_eq!(de(30), "30");
        assert_eq!(de(68), "8-and 60");
        assert_eq!(de(100), "hundred");
        assert_eq!(de(101), "1N hundred 1");
        assert_eq!(de(136), "1N hundred 6-and 30");
        assert_eq!(de(200), "2 hundred");
        assert_eq!(de(1000), "thousand");
        assert_eq!(de(1001), "1N thousand 1");
        assert_eq!(said("de", Some("f"), 1001), "1N thousand 1F");
        assert_eq!(de(1100), "1N thousand 1N hundred");
        assert_eq!(de(2000), "2 thousand");
        assert_eq!(de(21_000), "1-and 20 thousand");
        assert_eq!(de(100_000), "hundred thousand");
        assert_eq!(de(1_000_000), "1F million");
        assert_eq!(de(2_000_000), "2 millions");
        assert_eq!(de(2_500_000), "2 millions 5 hundred thousand");
        assert_eq!(de(1_000_000_000), "1F milliard");
        assert_eq!(de(3_000_000_001), "3 milliards 1");
    }

    #[test]
    fn french_follows_ast_say_number_full_fr() {
        let fr = |n| said("fr", None, n);
        assert_eq!(fr(1), "1");
        assert_eq!(said("fr", Some("f"), 1), "1F");
        assert_eq!(fr(20), "20");
        assert_eq!(fr(21), "20 et 1");
        assert_eq!(said("fr", Some("f"), 21), "20 et 1F");
        assert_eq!(fr(22), "20 2");
        assert_eq!(fr(70), "60 10");
        assert_eq!(fr(71), "60 et 11");
        assert_eq!(fr(77), "60 17");
        assert_eq!(fr(80), "80");
        assert_eq!(fr(81), "80 1");
        assert_eq!(fr(91), "80 11");
        assert_eq!(fr(100), "hundred");
        assert_eq!(fr(101), "hundred 1");
        assert_eq!(fr(200), "2 hundred");
        assert_eq!(fr(1000), "thousand");
        assert_eq!(fr(1234), "thousand 2 hundred 30 4");
        assert_eq!(fr(2000), "2 thousand");
        assert_eq!(fr(1_000_000), "1 million");
        assert_eq!(fr(2_000_000), "2 million");
    }

    #[test]
    fn spanish_follows_ast_say_number_full_es() {
        let es = |n| said("es", None, n);
        assert_eq!(es(1), "1");
        assert_eq!(said("es", Some("f"), 1), "1F");
        assert_eq!(said("es", Some("m"), 1), "1M");
        assert_eq!(es(21), "21");
        assert_eq!(es(30), "30");
        assert_eq!(es(31), "30 and 1");
        assert_eq!(said("es", Some("f"), 31), "30 and 1F");
        assert_eq!(es(100), "100");
        assert_eq!(es(101), "100-and 1");
        assert_eq!(es(150), "100-and 50");
        assert_eq!(es(500), "500");
        assert_eq!(es(555), "500 50 and 5");
        assert_eq!(es(1000), "thousand");
        assert_eq!(es(1001), "thousand 1");
        assert_eq!(es(2000), "2 thousand");
        assert_eq!(es(100_000), "100 thousand");
        assert_eq!(es(1_000_000), "1M million");
        assert_eq!(said("es", Some("f"), 1_000_000), "1M million");
        assert_eq!(es(2_000_000), "2 millions");
        assert_eq!(es(2_000_000_000), "2 thousand millions");
    }

    #[test]
    fn italian_follows_ast_say_number_full_it() {
        let it = |n| said("it", None, n);
        assert_eq!(it(1), "1");
        assert_eq!(it(19), "19");
        assert_eq!(it(21), "21");
        assert_eq!(it(22), "20 2");
        assert_eq!(it(28), "28");
        assert_eq!(it(45), "40 5");
        assert_eq!(it(98), "98");
        assert_eq!(it(100), "hundred");
        assert_eq!(it(108), "hundred 8");
        assert_eq!(it(121), "hundred 21");
        assert_eq!(it(200), "2 hundred");
        assert_eq!(it(1000), "thousand");
        assert_eq!(it(1500), "thousand 5 hundred");
        assert_eq!(it(2000), "2 thousands");
        assert_eq!(it(1_000_000), "million");
        assert_eq!(it(2_000_000), "2 millions");
        assert_eq!(said("it", Some("f"), 1), "1");
    }

    #[test]
    fn dutch_follows_ast_say_number_full_nl() {
        let nl = |n| said("nl", None, n);
        assert_eq!(nl(1), "1");
        assert_eq!(nl(20), "20");
        assert_eq!(nl(21), "1 nl-en 20");
        assert_eq!(nl(99), "9 nl-en 90");
        assert_eq!(nl(100), "hundred");
        assert_eq!(nl(121), "hundred 1 nl-en 20");
        assert_eq!(nl(300), "3 hundred");
        assert_eq!(nl(1000), "thousand");
        assert_eq!(nl(1099), "thousand 9 nl-en 90");
        assert_eq!(nl(1100), "11 hundred");
        assert_eq!(nl(1234), "12 hundred 4 nl-en 30");
        assert_eq!(nl(2000), "20 hundred");
        assert_eq!(nl(21_000), "1 nl-en 20 thousand");
        assert_eq!(nl(101_000), "hundred 1 thousand");
        assert_eq!(nl(1_000_000), "1 million");
    }

    #[test]
    fn portuguese_follows_ast_say_number_full_pt() {
        let pt = |n| said("pt", None, n);
        let pt_f = |n| said("pt", Some("f"), n);
        assert_eq!(pt(1), "1");
        assert_eq!(pt_f(1), "1F");
        assert_eq!(pt_f(2), "2F");
        assert_eq!(pt_f(3), "3");
        assert_eq!(pt(21), "20 pt-e 1");
        assert_eq!(pt(100), "100");
        assert_eq!(pt(101), "100E 1");
        assert_eq!(pt(200), "200");
        assert_eq!(pt_f(200), "200F");
        assert_eq!(pt(250), "200 pt-e 50");
        assert_eq!(pt(1000), "1000");
        assert_eq!(pt(1001), "1000 pt-e 1");
        assert_eq!(pt(1100), "1000 pt-e 100");
        assert_eq!(pt(1234), "1000 200 pt-e 30 pt-e 4");
        assert_eq!(pt(2000), "2 1000");
        assert_eq!(pt_f(2000), "2F 1000");
        assert_eq!(pt(1_000_000), "1 1000000");
        assert_eq!(pt(1_000_001), "1 1000000 pt-e 1");
        assert_eq!(pt(1_200_000), "1 1000000 pt-e 200 1000");
        assert_eq!(pt(2_000_000), "2 1000000S");
        assert_eq!(pt(1_234_567), "1 1000000 200 pt-e 30 pt-e 4 1000 500 pt-e 60 pt-e 7");
    }

    #[test]
    fn danish_follows_ast_say_number_full_da() {
        let da = |n| said("da", None, n);
        assert_eq!(da(1), "1");
        assert_eq!(said("da", Some("n"), 1), "1N");
        assert_eq!(da(21), "1-and 20");
        assert_eq!(da(100), "1N hundred");
        assert_eq!(da(101), "1N hundred and 1");
        assert_eq!(da(250), "2 hundred and 50");
        assert_eq!(da(1000), "1N thousand");
        assert_eq!(da(1100), "1N thousand 1N hundred");
        assert_eq!(da(2034), "2 thousand and 4-and 30");
        assert_eq!(da(1_000_012), "1 million and 12");
        assert_eq!(da(2_000_000), "2 millions");
    }

    #[test]
    fn norwegian_follows_ast_say_number_full_no() {
        let no = |n| said("no", None, n);
        assert_eq!(no(1), "1");
        assert_eq!(said("no", Some("n"), 1), "1N");
        assert_eq!(no(21), "20 1");
        assert_eq!(no(100), "1N hundred");
        assert_eq!(no(101), "1N hundred and 1");
        assert_eq!(no(1000), "1N thousand");
        assert_eq!(no(2034), "2 thousand and 30 4");
        assert_eq!(no(1_000_012), "1 million and 12");
        assert_eq!(no(2_000_000), "2 million");
    }

    #[test]
    fn swedish_follows_ast_say_number_full_se() {
        let se = |n| said("se", None, n);
        let se_n = |n| said("se", Some("n"), n);
        assert_eq!(se(1), "1");
        assert_eq!(se_n(1), "1N");
        assert_eq!(se(21), "20 1");
        assert_eq!(se(100), "1 hundred");
        assert_eq!(se_n(100), "hundred");
        assert_eq!(se_n(150), "hundred 50");
        assert_eq!(se_n(-150), "minus 1 hundred 50");
        assert_eq!(se(1000), "1 thousand");
        assert_eq!(se_n(1001), "1 thousand 1N");
        assert_eq!(se(100_000), "1 hundred thousand");
        assert_eq!(se(1_000_000), "1N million");
    }

    #[test]
    fn british_english_follows_ast_say_number_full_en_gb() {
        let gb = |n| said("en_GB", None, n);
        assert_eq!(gb(120), "1 hundred and 20");
        assert_eq!(gb(1005), "1 thousand and 5");
        assert_eq!(gb(1234), "1 thousand 2 hundred and 30 4");
        assert_eq!(gb(1_000_000), "1 million");
        assert_eq!(gb(2_000_050), "2 million and 50");
    }

    #[test]
    fn digits_and_letters_name_their_files() {
        assert_eq!(digit_files("12*#"), ["digits/1", "digits/2", "digits/star", "digits/pound"]);
        assert_eq!(alpha_files("Ab1"), ["letters/a", "letters/b", "digits/1"]);
    }
}
