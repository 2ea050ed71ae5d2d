use super::record::Egress;
use super::*;
use crate::test_support::{mac_key as key, mac_ring as ring, MAC_KEY_HEX as KEY_HEX};
use serde_json::{json, Value};

const T0: i64 = 1_795_451_828_123; // 2026-11-23T16:37:08.123Z

fn access(n: u64) -> AuditRecord {
    let mut r = AuditRecord::access(T0 + n as i64, Some(format!("req-{n}")));
    r.actor = Some(Actor {
        subject: Some("dr-house".into()),
        roles: Some(vec!["clinician".into()]),
        session: Some("s1".into()),
        amr: Some(vec!["pwd".into(), "otp".into()]),
        peer: Some("spiffe://cluster.local/ns/ehr/sa/web".into()),
    });
    r.action = Some(Action {
        method: "GET".into(),
        path: "/fhir/Patient/123".into(),
        route: Some("patient-record".into()),
        operation: Operation::Read,
    });
    r.resource = Some(Resource {
        patient: Some("123".into()),
        resource_type: Some("Patient".into()),
    });
    r.source = Some(Source {
        ip: Some("10.1.2.3".into()),
        user_agent: Some("curl/8".into()),
        tls: Some("TLSv1.3".into()),
    });
    r.outcome = Some(Outcome {
        decision: Decision::Allow,
        status: 200,
        reason: None,
        bytes: 5120,
        duration_ms: 12,
    });
    r
}

/// A chain-start and `n` access records, as JSON values (what is sent).
fn chain_of(n: u64) -> Vec<Value> {
    let (mut w, start) = ChainWriter::start("c1", key(), T0).unwrap();
    let mut out = vec![serde_json::to_value(start).unwrap()];
    for i in 1..=n {
        out.push(serde_json::to_value(w.seal(access(i)).unwrap()).unwrap());
    }
    out
}

fn feed_all(records: &[Value]) -> Vec<ChainFinding> {
    let mut v = ChainVerifier::new("c1");
    records.iter().flat_map(|r| v.feed(&ring(), r)).collect()
}

#[test]
fn record_has_exactly_the_contract_shape() {
    let (mut w, _) = ChainWriter::start("c1", key(), T0).unwrap();
    let mut r = access(1);
    r.inference = Some(Inference {
        model: Some("sepsis-risk".into()),
        version: Some("4.2.0".into()),
        ..Inference::default()
    });
    r.emergency = Some(Emergency {
        reason: "patient-emergency".into(),
    });
    let v = serde_json::to_value(w.seal(r).unwrap()).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "action",
            "actor",
            "chain",
            "egress",
            "emergency",
            "inference",
            "kind",
            "outcome",
            "requestId",
            "resource",
            "source",
            "time",
            "v"
        ]
    );
    assert_eq!(v["v"], 2);
    assert_eq!(v["kind"], "access");
    assert_eq!(v["time"], "2026-11-23T16:37:08.124Z");
    assert_eq!(v["resource"]["type"], "Patient");
    assert_eq!(v["source"]["userAgent"], "curl/8");
    assert_eq!(v["outcome"]["durationMs"], 12);
    assert_eq!(v["outcome"]["reason"], Value::Null);
    assert_eq!(v["action"]["operation"], "read");
    assert_eq!(v["emergency"]["reason"], "patient-emergency");
    assert_eq!(v["chain"]["id"], "c1");
    assert_eq!(v["chain"]["seq"], 1);
    assert_eq!(v["chain"]["keyId"], "k1");
    assert_eq!(v["chain"]["mac"].as_str().unwrap().len(), 64);
    // Round trip through the typed form.
    let back: AuditRecord = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(back).unwrap(), v);
    // Unknown members are refused by the typed form.
    let mut extra = v;
    extra["surprise"] = json!(1);
    assert!(serde_json::from_value::<AuditRecord>(extra).is_err());
}

#[test]
fn chain_start_is_seq_zero_with_genesis_prev_and_null_sections() {
    let (w, start) = ChainWriter::start("c1", key(), T0).unwrap();
    assert_eq!(start.kind, RecordKind::ChainStart);
    assert_eq!(start.chain.seq, 0);
    assert_eq!(start.chain.prev, GENESIS_PREV);
    assert!(start.actor.is_none() && start.outcome.is_none());
    assert_eq!(w.next_seq(), 1);
    let v = serde_json::to_value(&start).unwrap();
    assert_eq!(v["kind"], "chain-start");
    assert_eq!(v["actor"], Value::Null);
    assert_eq!(w.prev(), chain_link(&v));
}

#[test]
fn canonical_form_sorts_keys_at_every_depth_without_whitespace() {
    let a = json!({"b": {"z": 1, "a": [ {"y": true, "x": null} ]}, "a": "é\n\"", "c": -5});
    assert_eq!(
        String::from_utf8(canonical_bytes(&a)).unwrap(),
        r#"{"a":"é\n\"","b":{"a":[{"x":null,"y":true}],"z":1},"c":-5}"#
    );
    // Same as serde_json's own escaping for every control character.
    let ctl: String = (0u8..0x20).map(char::from).collect();
    assert_eq!(
        canonical_bytes(&Value::String(ctl.clone())),
        serde_json::to_vec(&ctl).unwrap()
    );
    // Member order in the input does not matter.
    let b: Value =
        serde_json::from_str(r#"{"c":-5,"a":"é\n\"","b":{"z":1,"a":[{"x":null,"y":true}]}}"#)
            .unwrap();
    assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
}

#[test]
fn mac_input_omits_only_chain_mac() {
    let r = &chain_of(1)[1];
    let input = String::from_utf8(mac_input(r)).unwrap();
    assert!(!input.contains("\"mac\""));
    assert!(input.contains("\"keyId\":\"k1\""));
    let mut no_mac = r.clone();
    no_mac["chain"].as_object_mut().unwrap().remove("mac");
    assert_eq!(mac_input(r), canonical_bytes(&no_mac));
    // Whitespace and member order of what was sent do not change the MAC.
    let pretty = serde_json::to_string_pretty(r).unwrap();
    let reparsed: Value = serde_json::from_str(&pretty).unwrap();
    assert_eq!(verify_mac(&ring(), &reparsed), MacCheck::Valid);
}

/// Independent computations of the contract (DESIGN.md "The audit record"), with `hmac` and
/// `sha2` directly: v2 and v1 MACs, and the digest.
fn hmac_hex(message: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(&(0u8..32).collect::<Vec<_>>()).unwrap();
    m.update(message);
    hex::encode(m.finalize().into_bytes())
}

fn sha256(message: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(message).to_vec()
}

#[test]
fn v2_prev_is_the_mac_of_the_previous_record() {
    let records = chain_of(3);
    for pair in records.windows(2) {
        let mac = pair[0]["chain"]["mac"].as_str().unwrap().to_string();
        assert_eq!(pair[1]["chain"]["prev"], mac.as_str());
        assert_eq!(chain_link(&pair[0]), mac);
        assert_eq!(authenticate(&ring(), &pair[0]), Ok(ChainLink::Mac(mac)));
        // Never the digest: that is the hash of the record without its MAC, bytes anyone can
        // post (as a dedup key it could be taken first by such a copy).
        let mut without_mac = pair[0].clone();
        without_mac["chain"].as_object_mut().unwrap().remove("mac");
        assert_ne!(pair[1]["chain"]["prev"], record_hash(&without_mac));
    }
    assert_eq!(feed_all(&records), vec![]);
}

#[test]
fn v1_prev_is_the_hash_of_the_previous_record_including_its_mac() {
    let records = reseal_v1(&chain_of(3), &key());
    for pair in records.windows(2) {
        assert_eq!(pair[0]["v"], 1);
        assert_eq!(pair[1]["chain"]["prev"], record_hash(&pair[0]));
        assert_eq!(chain_link(&pair[0]), record_hash(&pair[0]));
        let mut without_mac = pair[0].clone();
        without_mac["chain"].as_object_mut().unwrap().remove("mac");
        assert_ne!(pair[1]["chain"]["prev"], record_hash(&without_mac));
        assert_eq!(authenticate(&ring(), &pair[0]), Ok(ChainLink::WholeRecord));
    }
    assert_eq!(feed_all(&records), vec![]);
    // v1's MAC is over the canonical bytes themselves.
    assert_eq!(
        records[1]["chain"]["mac"],
        hmac_hex(&mac_input(&records[1])).as_str()
    );
}

#[test]
fn a_record_relabelled_to_the_other_version_does_not_verify() {
    let v2 = chain_of(2);
    let v1 = reseal_v1(&v2, &key());
    for (record, other) in [(&v2[1], 1), (&v1[1], 2)] {
        let mut relabelled = record.clone();
        relabelled["v"] = json!(other);
        assert_eq!(verify_mac(&ring(), &relabelled), MacCheck::BadMac);
    }
    // A v1 MAC put on the same content as v2 (and the other way) does not verify either.
    for (record, donor) in [(&v2[1], &v1[1]), (&v1[1], &v2[1])] {
        let mut moved = record.clone();
        moved["chain"]["mac"] = donor["chain"]["mac"].clone();
        assert_eq!(verify_mac(&ring(), &moved), MacCheck::BadMac);
    }
    // A version no filter writes never verifies, whatever its MAC.
    let mut v3 = v2[1].clone();
    v3["v"] = json!(3);
    v3["chain"]["mac"] = json!(compute_mac(&key(), &v3));
    assert_eq!(verify_mac(&ring(), &v3), MacCheck::BadMac);
    // A chain that changes version midway breaks its links.
    let mixed = [v2[0].clone(), v1[1].clone(), v2[2].clone()];
    assert!(!feed_all(&mixed).is_empty());
}

#[test]
fn mac_is_hmac_sha256_of_the_digest_and_detects_any_change() {
    let r = chain_of(1).remove(1);
    assert_eq!(verify_mac(&ring(), &r), MacCheck::Valid);
    assert_eq!(r["chain"]["mac"], compute_mac(&key(), &r));
    // Independent computation: HMAC over the 32 digest bytes of the canonical bytes without mac.
    let expected = hmac_hex(&sha256(&mac_input(&r)));
    assert_eq!(r["chain"]["mac"], expected.as_str());

    for (path, new) in [
        ("/resource/patient", json!("124")),
        ("/outcome/status", json!(403)),
        ("/chain/seq", json!(2)),
        ("/chain/keyId", json!("k2")),
        ("/time", json!("2026-11-23T16:37:09.124Z")),
    ] {
        let mut t = r.clone();
        *t.pointer_mut(path).unwrap() = new;
        assert_ne!(verify_mac(&ring(), &t), MacCheck::Valid, "{path}");
    }
    let mut added = r.clone();
    added["extra"] = json!("x");
    assert_eq!(verify_mac(&ring(), &added), MacCheck::BadMac);
    let mut flipped = r.clone();
    let mac = flipped["chain"]["mac"].as_str().unwrap().to_string();
    let first = if mac.starts_with('0') { "1" } else { "0" };
    flipped["chain"]["mac"] = json!(format!("{first}{}", &mac[1..]));
    assert_eq!(verify_mac(&ring(), &flipped), MacCheck::BadMac);
    let mut short = r.clone();
    short["chain"]["mac"] = json!("abcd");
    assert_eq!(verify_mac(&ring(), &short), MacCheck::BadMac);
    let mut unknown = r.clone();
    unknown["chain"]["keyId"] = json!("nope");
    assert_eq!(
        verify_mac(&ring(), &unknown),
        MacCheck::UnknownKey("nope".into())
    );
    assert_eq!(verify_mac(&ring(), &json!({"v": 1})), MacCheck::NoChain);
    // Another key does not verify it.
    let other = MacKeyRing::parse(&format!("k1:{}", "ab".repeat(32))).unwrap();
    assert_eq!(verify_mac(&other, &r), MacCheck::BadMac);
}

#[test]
fn key_parsing_refuses_short_or_bad_keys_and_carries_the_id() {
    assert_eq!(key().id(), "k1");
    let bare = MacKey::parse(KEY_HEX).unwrap();
    assert!(bare.id().starts_with('k') && bare.id().len() == 17);
    assert_eq!(
        bare.id(),
        MacKey::parse(&KEY_HEX.to_uppercase()).unwrap().id()
    );
    assert!(!bare.id().contains(&KEY_HEX[..8]));
    assert_eq!(MacKey::parse("").unwrap_err(), KeyError::Missing);
    assert_eq!(
        MacKey::parse(&KEY_HEX[..62]).unwrap_err(),
        KeyError::TooShort { bytes: 31 }
    );
    assert_eq!(
        MacKey::parse(&format!("{}zz", &KEY_HEX[..62])).unwrap_err(),
        KeyError::NotHex
    );
    assert_eq!(
        MacKey::parse(&format!("bad id:{KEY_HEX}")).unwrap_err(),
        KeyError::BadKeyId
    );
    assert_eq!(
        MacKey::parse(&format!(":{KEY_HEX}")).unwrap_err(),
        KeyError::BadKeyId
    );
    assert!(MacKey::from_bytes("x", &[0u8; 31]).is_err());
    // A longer key is fine.
    assert!(MacKey::parse(&format!("{KEY_HEX}{KEY_HEX}")).is_ok());
    // Debug never shows key material.
    assert!(!format!("{:?}", key()).contains("0102"));
    // Rotation: the first seals, all verify.
    let ring = MacKeyRing::parse(&format!("new:{},k1:{KEY_HEX}", "cd".repeat(32))).unwrap();
    assert_eq!(ring.current().id(), "new");
    assert_eq!(ring.ids().collect::<Vec<_>>(), ["new", "k1"]);
    let old = chain_of(1).remove(1);
    assert_eq!(verify_mac(&ring, &old), MacCheck::Valid);
    assert_eq!(
        MacKeyRing::parse(&format!("k1:{KEY_HEX},k1:{KEY_HEX}")).unwrap_err(),
        KeyError::DuplicateKeyId("k1".into())
    );
    assert_eq!(MacKeyRing::parse(" , ").unwrap_err(), KeyError::Missing);
}

#[test]
fn seal_refuses_non_access_and_does_not_advance() {
    let (mut w, _) = ChainWriter::start("c1", key(), T0).unwrap();
    let mut r = access(1);
    r.kind = RecordKind::ChainStart;
    assert!(w.seal(r).is_err());
    assert_eq!(w.next_seq(), 1);
    let bytes = w.seal_to_json(access(1)).unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["chain"]["seq"], 1);
    assert_eq!(ChainWriter::chain_id_from_random(&[0xab, 0x01]), "ab01");
}

#[test]
fn verifier_accepts_an_intact_chain_and_resumes() {
    let records = chain_of(5);
    assert!(feed_all(&records).is_empty());
    let mut v = ChainVerifier::new("c1");
    for r in &records[..3] {
        assert!(v.feed(&ring(), r).is_empty());
    }
    let mut resumed = ChainVerifier::resume("c1", v.next_seq(), v.prev());
    for r in &records[3..] {
        assert!(resumed.feed(&ring(), r).is_empty());
    }
    assert_eq!(resumed.next_seq(), 6);
}

#[test]
fn verifier_reports_bad_mac_without_advancing() {
    let records = chain_of(3);
    let mut forged = records.clone();
    forged[2]["outcome"]["status"] = json!(403);
    // Seq 2 with its MAC alone replaced (v2 links by the MAC: it must still fail its own check).
    let mut swapped = records.clone();
    swapped[2]["chain"]["mac"] = records[1]["chain"]["mac"].clone();
    // The untrusted seq 2 does not advance the chain, so the authentic seq 2 is reported missing
    // when seq 3 arrives (not a prev mismatch against the forgery).
    for case in [forged, swapped] {
        assert_eq!(
            feed_all(&case),
            vec![
                ChainFinding::BadMac { seq: 2 },
                ChainFinding::Gap {
                    expected: 2,
                    got: 3
                }
            ]
        );
    }
}

#[test]
fn verifier_reports_a_gap_once() {
    let mut records = chain_of(5);
    records.remove(2);
    records.remove(2);
    assert_eq!(
        feed_all(&records),
        vec![ChainFinding::Gap {
            expected: 2,
            got: 4
        }]
    );
    assert_eq!(
        ChainFinding::Gap {
            expected: 2,
            got: 4
        }
        .to_string(),
        "seq 2..=3 missing (deleted or never delivered)"
    );
    // A missing chain-start is a gap from 0.
    let records = chain_of(2);
    assert_eq!(
        feed_all(&records[1..]),
        vec![ChainFinding::Gap {
            expected: 0,
            got: 1
        }]
    );
}

#[test]
fn verifier_reports_prev_mismatch() {
    // Two chains with the same id but different content: seq 2 of the second does not follow seq 1
    // of the first.
    let a = chain_of(2);
    let (mut w, _) = ChainWriter::start("c1", key(), T0 + 5).unwrap();
    let _ = w.seal(access(7)).unwrap();
    let b2 = serde_json::to_value(w.seal(access(8)).unwrap()).unwrap();
    let records = vec![a[0].clone(), a[1].clone(), b2];
    assert_eq!(
        feed_all(&records),
        vec![ChainFinding::PrevMismatch { seq: 2 }]
    );
}

#[test]
fn verifier_reports_duplicates_and_reordering() {
    let records = chain_of(3);
    let dup = vec![
        records[0].clone(),
        records[1].clone(),
        records[1].clone(),
        records[2].clone(),
    ];
    assert_eq!(feed_all(&dup), vec![ChainFinding::Duplicate { seq: 1 }]);
    let swapped = vec![
        records[0].clone(),
        records[2].clone(),
        records[1].clone(),
        records[3].clone(),
    ];
    assert_eq!(
        feed_all(&swapped),
        vec![
            ChainFinding::Gap {
                expected: 1,
                got: 2
            },
            ChainFinding::Duplicate { seq: 1 },
        ]
    );
}

#[test]
fn verifier_reports_unknown_key_wrong_chain_malformed_and_misplaced_start() {
    let records = chain_of(1);
    let mut v = ChainVerifier::new("other");
    assert_eq!(
        v.feed(&ring(), &records[0]),
        vec![ChainFinding::WrongChain {
            seq: 0,
            chain_id: "c1".into()
        }]
    );
    let stranger = MacKeyRing::parse(&format!("k9:{KEY_HEX}")).unwrap();
    let mut v = ChainVerifier::new("c1");
    assert_eq!(
        v.feed(&stranger, &records[0]),
        vec![ChainFinding::UnknownKey {
            seq: 0,
            key_id: "k1".into()
        }]
    );
    assert!(matches!(
        v.feed(&ring(), &json!({"chain": {"id": "c1"}}))[..],
        [ChainFinding::Malformed { .. }]
    ));
    // An access record sealed at seq 0 (no chain-start) is flagged.
    let k = key();
    let mut rec = serde_json::to_value(access(1)).unwrap();
    rec["chain"] = json!({"id": "c1", "seq": 0, "prev": GENESIS_PREV, "keyId": "k1", "mac": ""});
    let mac = compute_mac(&k, &rec);
    rec["chain"]["mac"] = json!(mac);
    assert_eq!(
        ChainVerifier::new("c1").feed(&ring(), &rec),
        vec![ChainFinding::ChainStartMisplaced { seq: 0 }]
    );
    assert_eq!(
        ChainFinding::ChainStartMisplaced { seq: 0 }.kind(),
        FindingKind::ChainStartMisplaced
    );
}

#[test]
fn integrity_record_shape() {
    let r = IntegrityRecord::new(
        T0,
        None,
        IntegrityFinding {
            finding: FindingKind::Gap,
            chain_id: Some("c1".into()),
            seq: Some(4),
            detail: "seq 2..=3 missing".into(),
            record: None,
        },
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["kind"], "integrity");
    assert_eq!(v["integrity"]["finding"], "gap");
    assert_eq!(v["integrity"]["chainId"], "c1");
    assert_eq!(FindingKind::Gap.as_str(), "gap");
    assert_eq!(
        RecordKind::parse("chain-start"),
        Some(RecordKind::ChainStart)
    );
}

#[test]
fn parses_timestamps() {
    assert_eq!(parse_rfc3339_millis("2026-11-23T16:37:08.123Z"), Some(T0));
    assert_eq!(parse_rfc3339_millis("2026-11-23T16:37:08Z"), Some(T0 - 123));
    assert_eq!(
        parse_rfc3339_millis("2026-11-23T17:37:08.123456+01:00"),
        Some(T0)
    );
    assert_eq!(parse_rfc3339_millis("2026-11-23"), Some(1_795_392_000_000));
    for bad in [
        "2026-11-23T25:00:00Z",
        "2026-11-23T16:37:08",
        "x",
        "2026-11-23T16:37:08.Z",
    ] {
        assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
    }
    assert_eq!(
        parse_rfc3339_millis(&crate::calendar::rfc3339_millis(T0)),
        Some(T0)
    );
}

/// Hostile timestamps (a reviewer's query parameter, an ingested record's `time`): non-ASCII
/// bytes at every position the parser looks at are refused, never a panic (`+0é00` sliced the
/// offset by byte index inside the `é`).
#[test]
fn timestamps_with_non_ascii_bytes_are_refused_without_panicking() {
    for bad in [
        "2026-01-01T00:00:00+0é00",
        "2026-01-01T00:00:00-é:00",
        "2026-01-01T00:00:00+00:é",
        "2026-01-01T00:00:00+00:0é",
        "2026-01-01Té0:00:00Z",
        "2026-01-01T0é:00:00Z",
        "2026-01-01T00:00:0éZ",
        "2026-01-01T00:00:00.éZ",
        "2026-01-01T00:00:00.1éZ",
        "2026-01-0é",
        "é026-01-01",
        "2026-01-01é",
        "2026-01-01T00:00:00é",
        "2026-01-01T00:00:00+é0",
        "2026-01-01T00:00:00Zé",
        "2026-01-01T00:00:00+01:00é",
        "２０２６-01-01",
    ] {
        assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
    }
    // Every prefix of valid timestamps cut at every char boundary, and a multi-byte char spliced
    // in at every position.
    for good in ["2026-11-23T17:37:08.123456+01:00", "2026-11-23T16:37:08Z"] {
        for (i, _) in good.char_indices() {
            let _ = parse_rfc3339_millis(good.get(..i).unwrap_or_default());
            let spliced = format!("{}é{}", &good[..i], &good[i..]);
            assert_eq!(parse_rfc3339_millis(&spliced), None, "{spliced}");
            let replaced = format!("{}é{}", &good[..i], &good[i + 1..]);
            assert_eq!(parse_rfc3339_millis(&replaced), None, "{replaced}");
        }
    }
}

/// Records that exercise every field of the typed canonical writer: all sections filled, all
/// empty, and strings that need escapes (quotes, backslashes, control characters, non-ASCII).
fn writer_cases() -> Vec<AuditRecord> {
    let mut full = access(1);
    full.inference = Some(Inference {
        model: Some("sepsis-risk".into()),
        version: Some("4.2.0".into()),
        response_sha256: Some("ab".repeat(32)),
        response_signature_key_id: Some("r1".into()),
    });
    full.emergency = Some(Emergency {
        reason: "patient-emergency".into(),
    });
    full.egress = Some(Egress {
        host: Some("api.llm-vendor.example".into()),
        baa_id: Some("BAA-2026-014".into()),
    });
    let mut odd = access(2);
    let weird = "q\"b\\s/\u{0}\u{1}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f}\u{7f} é 日本 🩺 </script>";
    odd.request_id = Some(weird.into());
    odd.action = Some(Action {
        method: "PATCH".into(),
        path: format!("/fhir/Patient/{weird}?a=1&b=\"2\""),
        route: None,
        operation: Operation::Export,
    });
    odd.actor = Some(Actor {
        subject: Some(weird.into()),
        roles: Some(vec![]),
        session: None,
        amr: Some(vec![weird.into(), String::new()]),
        peer: None,
    });
    odd.resource = Some(Resource::default());
    odd.source = Some(Source::default());
    odd.egress = Some(Egress::default());
    odd.inference = Some(Inference {
        response_sha256: Some(weird.into()),
        ..Inference::default()
    });
    odd.outcome = Some(Outcome {
        decision: Decision::Deny,
        status: 0,
        reason: Some("bad_signature".into()),
        bytes: u64::MAX,
        duration_ms: 0,
    });
    odd.truncated = Some(vec!["source.userAgent".into(), weird.into()]);
    let mut empty = AuditRecord::access(T0, None);
    empty.actor = None;
    empty.resource = None;
    empty.source = None;
    let mut ops: Vec<AuditRecord> = [Operation::Write, Operation::Delete, Operation::Inference]
        .into_iter()
        .map(|op| {
            let mut r = access(3);
            if let Some(a) = r.action.as_mut() {
                a.operation = op;
            }
            r
        })
        .collect();
    let mut out = vec![full, odd, empty, access(4)];
    out.append(&mut ops);
    out
}

#[test]
fn sealed_bytes_are_the_canonical_form_of_the_sealed_record() {
    // The writer seals from the typed record; the collector and `audit verify` check from the
    // JSON value. Both must see the same bytes, MAC and hash.
    let (mut fast, _) = ChainWriter::start("c1", key(), T0).unwrap();
    let (mut typed, _) = ChainWriter::start("c1", key(), T0).unwrap();
    let mut verifier = ChainVerifier::new("c1");
    let (_, start) = ChainWriter::start("c1", key(), T0).unwrap();
    assert!(verifier
        .feed(&ring(), &serde_json::to_value(&start).unwrap())
        .is_empty());
    for record in writer_cases() {
        let prev = fast.prev().to_string();
        let bytes = fast.seal_to_json(record.clone()).unwrap();
        let sealed = typed.seal(record).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            bytes,
            canonical_bytes(&v),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(v, serde_json::to_value(&sealed).unwrap());
        assert_eq!(
            serde_json::from_slice::<AuditRecord>(&bytes).unwrap(),
            sealed
        );
        assert_eq!(v["chain"]["prev"], prev.as_str());
        assert_eq!(compute_mac(&key(), &v), sealed.chain.mac);
        assert_eq!(verify_mac(&ring(), &v), MacCheck::Valid);
        assert_eq!(fast.prev(), chain_link(&v));
        assert_eq!(typed.prev(), fast.prev());
        assert!(verifier.feed(&ring(), &v).is_empty());
    }
}

#[test]
fn typed_mac_input_matches_the_value_form_for_every_case() {
    for mut record in writer_cases() {
        record.chain = ChainInfo {
            id: "c\"1".into(),
            seq: 12_345_678_901,
            prev: GENESIS_PREV.into(),
            key_id: "k1".into(),
            mac: "ff".repeat(32),
        };
        let mut bytes = Vec::new();
        let at = super::canonical::write_record_without_mac(&record, &mut bytes);
        let v = serde_json::to_value(&record).unwrap();
        assert_eq!(bytes, mac_input(&v));
        super::canonical::insert_mac(&mut bytes, at, &record.chain.mac);
        assert_eq!(bytes, canonical_bytes(&v));
    }
}

#[test]
fn canonical_strings_are_escaped_as_serde_json_escapes_them() {
    let mut all: String = (0u32..0x80).filter_map(char::from_u32).collect();
    all.push_str("é日本🩺\u{2028}\u{fffd}");
    for s in [all.as_str(), "", "plain", "\"", "\\", "\u{0}", "end\u{1f}"] {
        let v = Value::String(s.to_string());
        assert_eq!(
            canonical_bytes(&v),
            serde_json::to_vec(&v).unwrap(),
            "{s:?}"
        );
    }
}
