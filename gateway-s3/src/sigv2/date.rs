//! HTTP dates, as SigV2's `Date` and `x-amz-date` headers carry them.

use time::OffsetDateTime;

/// Parses a date in one of HTTP's formats (RFC 1123, RFC 850, asctime), with the numeric
/// zones of RFC 822 (`+0000`) that S3's examples and s3cmd use.
pub(super) fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    let mut tokens: Vec<&str> = text.split([' ', ',']).filter(|t| !t.is_empty()).collect();
    // The day of the week is optional and not checked.
    if tokens
        .first()
        .is_some_and(|t| t.bytes().all(|b| b.is_ascii_alphabetic()) && month(t).is_none())
    {
        tokens.remove(0);
    }
    let (day, month_name, year, clock, zone) = match tokens.as_slice() {
        // RFC 1123: 06 Nov 1994 08:49:37 GMT
        [d, m, y, t, z] => (*d, *m, *y, *t, Some(*z)),
        // RFC 850: 06-Nov-94 08:49:37 GMT
        [dmy, t, z] => {
            let mut parts = dmy.split('-');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(d), Some(m), Some(y), None) => (d, m, y, *t, Some(*z)),
                _ => return None,
            }
        }
        // asctime: Nov  6 08:49:37 1994
        [m, d, t, y] => (*d, *m, *y, *t, None),
        _ => return None,
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(day) || !digits(year) || day.len() > 2 {
        return None;
    }
    let year: i32 = match (year.len(), year.parse::<i32>().ok()?) {
        (2, y) if y < 70 => 2000 + y,
        (2, y) => 1900 + y,
        (4, y) => y,
        _ => return None,
    };
    let date = time::Date::from_calendar_date(year, month(month_name)?, day.parse().ok()?).ok()?;
    let mut hms = clock.split(':');
    let mut field = || {
        hms.next()
            .filter(|f| f.len() == 2 && digits(f))?
            .parse::<u8>()
            .ok()
    };
    let (h, m, s) = (field()?, field()?, field()?);
    if hms.next().is_some() {
        return None;
    }
    let offset = match zone {
        None | Some("GMT" | "UTC" | "UT" | "Z") => time::UtcOffset::UTC,
        Some(z) => {
            let (sign, hhmm) = match z.as_bytes().first() {
                Some(b'+') => (1, &z[1..]),
                Some(b'-') => (-1, &z[1..]),
                _ => return None,
            };
            if hhmm.len() != 4 || !digits(hhmm) {
                return None;
            }
            let hours: i8 = hhmm[..2].parse().ok()?;
            let minutes: i8 = hhmm[2..].parse().ok()?;
            time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
        }
    };
    let clock = time::Time::from_hms(h, m, s).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

fn month(name: &str) -> Option<time::Month> {
    use time::Month::*;
    let months = [
        January, February, March, April, May, June, July, August, September, October, November,
        December,
    ];
    months
        .into_iter()
        .find(|m| name.eq_ignore_ascii_case(&m.to_string()[..3]))
        .filter(|_| name.len() == 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        parse_http_date(text).unwrap_or_else(|| panic!("`{text}` does not parse"))
    }

    #[test]
    fn http_dates_parse_in_every_format() {
        let expected = at("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(expected.unix_timestamp(), 784_111_777);
        assert_eq!(at("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(at("Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 +0000"), expected);
        assert_eq!(at("Sun, 06 Nov 1994 10:49:37 +0200"), expected);
        assert_eq!(at("06 Nov 1994 03:49:37 -0500"), expected);
        assert_eq!(at("Sun, 6 Nov 1994 08:49:37 UTC"), expected);
        for bad in [
            "",
            "Bad Date",
            "20130524T000000Z",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 CEST",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert!(parse_http_date(bad).is_none(), "`{bad}` parsed");
        }
    }
}
