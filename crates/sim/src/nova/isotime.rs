//! ISO 8601 times as Nova reads them in a query (`changes-since`, `changes-before`): the JSON
//! schema's `date-time` format and `_get_servers` both call oslo.utils' `parse_isotime`, which is
//! `iso8601.parse_date` (pyiso8601 2.x): its regular expression, a time without a zone in UTC,
//! and Python's `datetime` ranges.

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use regex::Regex;

/// pyiso8601's `ISO8601_REGEX`, but for its one lookahead (`(?!$)` after a month without a dash,
/// checked in [`parse`]); Python's `$` also matches before a final newline.
static ISO8601: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        ^(?P<year>[0-9]{4})
        (
            (
                (-(?P<monthdash>[0-9]{1,2}))
                |
                (?P<month>[0-9]{2})
            )
            (
                (
                    (-(?P<daydash>[0-9]{1,2}))
                    |
                    (?P<day>[0-9]{2})
                )
                (
                    (
                        (?P<separator>[\ T])
                        (?P<hour>[0-9]{2})
                        (:?(?P<minute>[0-9]{2}))?
                        (
                            :?(?P<second>[0-9]{1,2})
                            ([.,](?P<second_fraction>[0-9]+))?
                        )?
                        (?P<timezone>
                            Z
                            |
                            (
                                (?P<tz_sign>[-+])
                                (?P<tz_hour>[0-9]{2})
                                :?
                                (?P<tz_minute>[0-9]{2})?
                            )
                        )?
                    )?
                )
            )?
        )?
        \n?$",
    )
    .expect("the ISO 8601 pattern compiles")
});

/// A time Nova accepts in a query, or none when its schema answers "is not a 'date-time'".
pub fn parse(text: &str) -> Option<Timestamp> {
    let captures = ISO8601.captures(text)?;
    let number = |name: &str| -> Option<i64> {
        captures
            .name(name)
            .map_or(Some(0), |found| found.as_str().parse().ok())
    };
    // The lookahead: a month without a dash may not end the text ("YYYYMM" is refused).
    if let Some(month) = captures.name("month")
        && text[month.end()..].trim_end_matches('\n').is_empty()
    {
        return None;
    }
    let year = number("year")?;
    let month = match captures
        .name("month")
        .or_else(|| captures.name("monthdash"))
    {
        Some(month) => month.as_str().parse().ok()?,
        None => 1,
    };
    let day = match captures.name("day").or_else(|| captures.name("daydash")) {
        Some(day) => day.as_str().parse().ok()?,
        None => 1,
    };
    let (hour, minute, second) = (number("hour")?, number("minute")?, number("second")?);
    // `int(Decimal("0.<fraction>") * 1000000)`: the first six digits.
    let micros = captures.name("second_fraction").map_or(0, |fraction| {
        let digits: String = fraction
            .as_str()
            .chars()
            .chain("000000".chars())
            .take(6)
            .collect();
        digits.parse::<i32>().unwrap_or(0)
    });
    // Python's `datetime`: years 1 to 9999, the hour below 24, the second below 60.
    if !(1..=9999).contains(&year) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let civil = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        micros * 1000,
    )
    .ok()?;
    let minutes = match captures.name("tz_sign") {
        None => 0,
        Some(sign) => {
            let minutes = number("tz_hour")? * 60 + number("tz_minute")?;
            // `datetime.timezone` takes an offset strictly within a day.
            if minutes >= 24 * 60 {
                return None;
            }
            if sign.as_str() == "-" {
                -minutes
            } else {
                minutes
            }
        }
    };
    let offset = Offset::from_seconds(i32::try_from(minutes * 60).ok()?).ok()?;
    civil
        .to_zoned(TimeZone::fixed(offset))
        .ok()
        .map(|zoned| zoned.timestamp())
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn utc(text: &str) -> String {
        parse(text)
            .map(|time| time.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            .unwrap_or_else(|| "invalid".to_owned())
    }

    #[test]
    fn reads_what_pyiso8601_reads() {
        assert_eq!(utc("2011-01-24T17:08:01Z"), "2011-01-24T17:08:01.000000Z");
        // Without a zone: UTC.
        assert_eq!(utc("2011-01-24T17:08:01"), "2011-01-24T17:08:01.000000Z");
        assert_eq!(
            utc("2011-01-24 17:08:01.1234567+01:30"),
            "2011-01-24T15:38:01.123456Z"
        );
        assert_eq!(
            utc("2011-01-24T17:08:01,5-0100"),
            "2011-01-24T18:08:01.500000Z"
        );
        assert_eq!(utc("2011-01-24T17:08:01+01"), "2011-01-24T16:08:01.000000Z");
        assert_eq!(utc("2011"), "2011-01-01T00:00:00.000000Z");
        assert_eq!(utc("2011-1"), "2011-01-01T00:00:00.000000Z");
        assert_eq!(utc("2011-01-2"), "2011-01-02T00:00:00.000000Z");
        assert_eq!(utc("20110124T170801Z"), "2011-01-24T17:08:01.000000Z");
        assert_eq!(utc("2011-01-24T17"), "2011-01-24T17:00:00.000000Z");
        assert_eq!(utc("2011-01-24T17:08:01Z\n"), "2011-01-24T17:08:01.000000Z");
    }

    #[test]
    fn refuses_what_pyiso8601_refuses() {
        for text in [
            "asdf",
            "1",
            "",
            "201101",
            "2011-13-01",
            "2011-02-29",
            "2011-01-24Z",
            "2011-01-24T24:00:00",
            "2011-01-24T17:60",
            "2011-01-24T17:08:60",
            "2011-01-24t17:08:01z",
            "2011-01-24T17:08:01+24:00",
            "0000-01-01",
            "2011-01-24T17:08:01 UTC",
        ] {
            assert_eq!(utc(text), "invalid", "{text:?}");
        }
        assert_eq!(utc("2012-02-29"), "2012-02-29T00:00:00.000000Z");
        assert_eq!(
            utc("2011-01-24T17:08:01+23:59"),
            "2011-01-23T17:09:01.000000Z"
        );
    }
}
