//! Conformance: for each protocol, its legal runs end where the specification says, and
//! each illegal step is rejected without moving anything.

use super::*;
use Performative as P;

const CONVERSATION: &str = "c-1";

/// One message of a run: sender, act, receivers.
type Step<'a> = (&'a str, Performative, &'a [&'a str]);

fn from(sender: &str, act: Performative, to: &[&str]) -> Message {
    let mut message = Message::new(act, sender).conversation(CONVERSATION);
    for r in to {
        message = message.to(*r);
    }
    message
}

/// Opens `protocol` from `i` to `participants` with `opening`, then plays `steps`
/// (sender, act, receivers), failing at the first rejected one.
fn play(
    protocol: Protocol,
    opening: Performative,
    participants: &[&str],
    steps: &[Step],
) -> Result<Conversation, ProtocolError> {
    let mut conversation =
        Conversation::open(&from("i", opening, participants).protocol(protocol.name()))?;
    for (sender, act, to) in steps {
        conversation.observe(&from(sender, *act, to))?;
    }
    Ok(conversation)
}

fn done(outcome: Outcome) -> Option<Stage> {
    Some(Stage::Done(outcome))
}

#[test]
fn legal_runs_end_as_the_specifications_say() {
    use Protocol::*;
    let p: AgentId = "p".into();
    let runs: Vec<(Protocol, Performative, Vec<Step>, Option<Stage>)> = vec![
        (
            Request,
            P::Request,
            vec![("p", P::Agree, &["i"]), ("p", P::Inform, &["i"])],
            done(Outcome::Completed),
        ),
        (
            Request,
            P::Request,
            vec![("p", P::Inform, &["i"])],
            done(Outcome::Completed),
        ),
        (
            Request,
            P::Request,
            vec![("p", P::Refuse, &["i"])],
            done(Outcome::Refused),
        ),
        (
            Request,
            P::Request,
            vec![("p", P::Agree, &["i"]), ("p", P::Failure, &["i"])],
            done(Outcome::Failed),
        ),
        (
            Query,
            P::QueryRef,
            vec![("p", P::Agree, &["i"]), ("p", P::Inform, &["i"])],
            done(Outcome::Completed),
        ),
        (
            Query,
            P::QueryIf,
            vec![("p", P::Inform, &["i"])],
            done(Outcome::Completed),
        ),
        (
            Query,
            P::QueryIf,
            vec![("p", P::Failure, &["i"])],
            done(Outcome::Failed),
        ),
        (
            Propose,
            P::Propose,
            vec![("p", P::AcceptProposal, &["i"])],
            done(Outcome::Completed),
        ),
        (
            Propose,
            P::Propose,
            vec![("p", P::RejectProposal, &["i"])],
            done(Outcome::Rejected),
        ),
        (
            Subscribe,
            P::Subscribe,
            vec![
                ("p", P::Agree, &["i"]),
                ("p", P::Inform, &["i"]),
                ("p", P::Inform, &["i"]),
            ],
            Some(Stage::Agreed),
        ),
        (
            Subscribe,
            P::Subscribe,
            vec![
                ("p", P::Agree, &["i"]),
                ("p", P::Inform, &["i"]),
                ("i", P::Cancel, &["p"]),
                ("p", P::Inform, &["i"]),
            ],
            done(Outcome::Cancelled),
        ),
        (
            ContractNet,
            P::CallForProposal,
            vec![
                ("p", P::Propose, &["i"]),
                ("i", P::AcceptProposal, &["p"]),
                ("p", P::Inform, &["i"]),
            ],
            done(Outcome::Completed),
        ),
        (
            ContractNet,
            P::CallForProposal,
            vec![
                ("p", P::Propose, &["i"]),
                ("i", P::AcceptProposal, &["p"]),
                ("p", P::Failure, &["i"]),
            ],
            done(Outcome::Failed),
        ),
        (
            ContractNet,
            P::CallForProposal,
            vec![("p", P::Refuse, &["i"])],
            done(Outcome::Refused),
        ),
        (
            ContractNet,
            P::CallForProposal,
            vec![("p", P::Propose, &["i"]), ("i", P::RejectProposal, &["p"])],
            done(Outcome::Rejected),
        ),
        (
            IteratedContractNet,
            P::CallForProposal,
            vec![
                ("p", P::Propose, &["i"]),
                ("i", P::CallForProposal, &["p"]),
                ("p", P::Propose, &["i"]),
                ("i", P::AcceptProposal, &["p"]),
                ("p", P::Inform, &["i"]),
            ],
            done(Outcome::Completed),
        ),
    ];
    for (protocol, opening, steps, end) in runs {
        let conversation = play(protocol, opening, &["p"], &steps)
            .unwrap_or_else(|e| panic!("{protocol} {opening} {steps:?}: {e}"));
        assert_eq!(conversation.stage(&p), end, "{protocol} {steps:?}");
    }
}

#[test]
fn illegal_steps_are_rejected_and_move_nothing() {
    use Protocol::*;
    let cases: Vec<(Protocol, Performative, Vec<Step>)> = vec![
        // The initiator cannot answer its own request.
        (Request, P::Request, vec![("i", P::Agree, &["p"])]),
        // Agreeing twice; informing after the end.
        (
            Request,
            P::Request,
            vec![("p", P::Agree, &["i"]), ("p", P::Agree, &["i"])],
        ),
        (
            Request,
            P::Request,
            vec![("p", P::Inform, &["i"]), ("p", P::Inform, &["i"])],
        ),
        // A proposal is not an answer to a request.
        (Request, P::Request, vec![("p", P::Propose, &["i"])]),
        (Query, P::QueryRef, vec![("p", P::AcceptProposal, &["i"])]),
        (Propose, P::Propose, vec![("p", P::Inform, &["i"])]),
        // Awarding before a bid; a result before the award.
        (
            ContractNet,
            P::CallForProposal,
            vec![("i", P::AcceptProposal, &["p"])],
        ),
        (
            ContractNet,
            P::CallForProposal,
            vec![("p", P::Propose, &["i"]), ("p", P::Inform, &["i"])],
        ),
        // Only the iterated form calls again.
        (
            ContractNet,
            P::CallForProposal,
            vec![("p", P::Propose, &["i"]), ("i", P::CallForProposal, &["p"])],
        ),
        // Nothing after the end, not even a cancel.
        (
            ContractNet,
            P::CallForProposal,
            vec![("p", P::Refuse, &["i"]), ("i", P::Cancel, &["p"])],
        ),
        // Only the initiator cancels.
        (Subscribe, P::Subscribe, vec![("p", P::Cancel, &["i"])]),
        // While cancelling, only the cancel's answer.
        (
            Request,
            P::Request,
            vec![("i", P::Cancel, &["p"]), ("p", P::Agree, &["i"])],
        ),
    ];
    for (protocol, opening, steps) in cases {
        let (last, legal) = steps.split_last().unwrap();
        let mut conversation = play(protocol, opening, &["p"], legal).unwrap();
        let before = conversation.stage(&"p".into());
        let err = conversation
            .observe(&from(last.0, last.1, last.2))
            .expect_err(&format!("{protocol} {steps:?} should be rejected"));
        assert!(matches!(err, ProtocolError::Illegal { .. }), "{err}");
        assert_eq!(
            conversation.stage(&"p".into()),
            before,
            "{protocol}: moved anyway"
        );
    }
}

#[test]
fn cancel_and_not_understood_are_legal_everywhere_before_the_end() {
    for protocol in Protocol::ALL {
        let opening = Performative::ALL
            .into_iter()
            .find(|act| opens(protocol, *act))
            .unwrap();
        // Each prefix of a run that has not ended.
        let prefixes: Vec<Vec<Step>> = match protocol {
            Protocol::ContractNet | Protocol::IteratedContractNet => vec![
                vec![],
                vec![("p", P::Propose, &["i"])],
                vec![("p", P::Propose, &["i"]), ("i", P::AcceptProposal, &["p"])],
            ],
            Protocol::Propose => vec![vec![]],
            _ => vec![vec![], vec![("p", P::Agree, &["i"])]],
        };
        for prefix in prefixes {
            let p: AgentId = "p".into();
            let mut c = play(protocol, opening, &["p"], &prefix).unwrap();
            c.observe(&from("i", P::Cancel, &["p"])).unwrap();
            assert_eq!(
                c.stage(&p),
                Some(Stage::Cancelling),
                "{protocol} {prefix:?}"
            );
            c.observe(&from("p", P::Inform, &["i"])).unwrap();
            assert_eq!(c.stage(&p), done(Outcome::Cancelled));
            for side in ["i", "p"] {
                let mut c = play(protocol, opening, &["p"], &prefix).unwrap();
                let to: &[&str] = if side == "i" { &["p"] } else { &["i"] };
                c.observe(&from(side, P::NotUnderstood, to)).unwrap();
                assert_eq!(
                    c.stage(&p),
                    done(Outcome::NotUnderstood),
                    "{protocol} {side}"
                );
            }
        }
    }
}

#[test]
fn a_call_for_proposals_is_answered_by_each_participant_for_itself() {
    let mut c = play(
        Protocol::ContractNet,
        P::CallForProposal,
        &["a", "b", "c"],
        &[],
    )
    .unwrap();
    c.observe(&from("a", P::Propose, &["i"])).unwrap();
    c.observe(&from("b", P::Refuse, &["i"])).unwrap();
    c.observe(&from("c", P::Propose, &["i"])).unwrap();
    assert_eq!(c.at(Stage::Proposed), vec![AgentId::from("a"), "c".into()]);
    // Rejecting both a bid and a refusal at once is illegal for one, so moves neither.
    assert!(c
        .observe(&from("i", P::RejectProposal, &["c", "b"]))
        .is_err());
    assert_eq!(c.stage(&"c".into()), Some(Stage::Proposed));
    c.observe(&from("i", P::AcceptProposal, &["a"])).unwrap();
    c.observe(&from("i", P::RejectProposal, &["c"])).unwrap();
    assert!(!c.finished());
    c.observe(&from("a", P::Inform, &["i"])).unwrap();
    assert!(c.finished());
    let stranger = c.observe(&from("z", P::Propose, &["i"])).unwrap_err();
    assert!(matches!(stranger, ProtocolError::Stranger { .. }));
}

#[test]
fn deadlines_reject_late_answers_and_expire_silent_ones() {
    let by = Timestamp(1_000);
    let opening = from("i", P::CallForProposal, &["a", "b", "c"])
        .protocol("fipa-contract-net")
        .reply_by(by);
    let mut c = Conversation::open(&opening).unwrap();
    c.observe_at(&from("a", P::Propose, &["i"]), Timestamp(999))
        .unwrap();
    let late = c
        .observe_at(&from("b", P::Propose, &["i"]), Timestamp(1_001))
        .unwrap_err();
    assert!(
        matches!(late, ProtocolError::Late { by: 1_000, .. }),
        "{late}"
    );
    assert_eq!(c.stage(&"b".into()), done(Outcome::TimedOut));
    assert_eq!(c.expire(Timestamp(999)), Vec::<AgentId>::new());
    assert_eq!(c.expire(Timestamp(1_002)), vec![AgentId::from("c")]);
    // The bid in time stands, and its award has no deadline unless the award sets one.
    c.observe_at(&from("i", P::AcceptProposal, &["a"]), Timestamp(1_003))
        .unwrap();
    c.observe_at(&from("a", P::Inform, &["i"]), Timestamp(5_000))
        .unwrap();
    assert!(c.finished());
}

#[test]
fn openings_and_conversations_are_checked() {
    let no_id = Message::new(P::Request, "i").to("p");
    assert_eq!(
        Conversation::open(&no_id).unwrap_err(),
        ProtocolError::NoConversationId
    );
    let inform = from("i", P::Inform, &["p"]);
    assert!(matches!(
        Conversation::open(&inform),
        Err(ProtocolError::NoOpening(_))
    ));
    let mismatch = from("i", P::Request, &["p"]).protocol("fipa-contract-net");
    assert!(matches!(
        Conversation::open(&mismatch),
        Err(ProtocolError::BadOpening { .. })
    ));
    let unknown = from("i", P::Request, &["p"]).protocol("fipa-english-auction");
    assert!(matches!(
        Conversation::open(&unknown),
        Err(ProtocolError::UnknownProtocol(_))
    ));
    // No protocol named: the act's own.
    let c = Conversation::open(&from("i", P::CallForProposal, &["p"])).unwrap();
    assert_eq!(c.protocol(), Protocol::ContractNet);
    let mut c = Conversation::open(&from("i", P::Request, &["p"])).unwrap();
    let other = Message::new(P::Agree, "p").to("i").conversation("c-2");
    assert!(matches!(
        c.observe(&other),
        Err(ProtocolError::WrongConversation { .. })
    ));
}
