//! SIP status codes and Q.850 hangup causes, both ways, as chan_sip's `hangup_cause2sip` and
//! `hangup_sip2cause`.

use starling_core::frame::Cause;

/// Asterisk's `hangup_cause2sip`: the final response for a call refused with `cause`.
pub fn hangup_cause_to_sip(cause: Cause) -> u16 {
    match cause.0 {
        1 | 3 => 404,
        17 => 486,
        18 => 408,
        19 => 480,
        20 => 480,
        21 => 403,
        22 => 410,
        27 => 502,
        28 => 484,
        29 => 501,
        34 | 41 | 42 | 44 => 503,
        38 => 500,
        58 | 88 => 488,
        102 => 504,
        127 => 500,
        _ => 603,
    }
}

/// Asterisk's `hangup_sip2cause`: the cause of a call refused with `status` (the classes'
/// defaults come after the codes they name apart).
#[allow(clippy::match_overlapping_arm)]
pub fn sip_to_hangup_cause(status: u16) -> Cause {
    match status {
        401 | 403 | 407 | 603 => Cause::CALL_REJECTED,
        404 | 485 | 604 => Cause::UNALLOCATED,
        408 => Cause::NO_USER_RESPONSE,
        409 => Cause::NORMAL_TEMPORARY_FAILURE,
        410 => Cause::NUMBER_CHANGED,
        420 => Cause::NO_ROUTE_DESTINATION,
        480 | 483 => Cause::NO_ANSWER,
        484 => Cause::INVALID_NUMBER_FORMAT,
        486 | 600 => Cause::USER_BUSY,
        488 | 606 => Cause::BEARERCAPABILITY_NOTAVAIL,
        500 => Cause::FAILURE,
        501 => Cause::FACILITY_REJECTED,
        502 => Cause::DESTINATION_OUT_OF_ORDER,
        503 => Cause::CONGESTION,
        504 => Cause::RECOVERY_ON_TIMER_EXPIRE,
        400..=499 => Cause::INTERWORKING,
        500..=599 => Cause::CONGESTION,
        600..=699 => Cause::CALL_REJECTED,
        _ => Cause::NORMAL_CLEARING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangup_causes_map_to_asterisks_responses() {
        assert_eq!(hangup_cause_to_sip(Cause::USER_BUSY), 486);
        assert_eq!(hangup_cause_to_sip(Cause::UNALLOCATED), 404);
        assert_eq!(hangup_cause_to_sip(Cause::CONGESTION), 503);
        assert_eq!(hangup_cause_to_sip(Cause::NORMAL_CLEARING), 603);
        assert_eq!(hangup_cause_to_sip(Cause::FAILURE), 500);
    }
}
