//! Sampling from a (briefly trained) model.

use crate::helpers::{texts, tiny, torch_rng};
use poet_core::config::Formulation;
use poet_worker::sample::{SampleMode, SampleRequest, Sampling, sample, seed_text};
use poet_worker::train::Trainer;
use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use tch::{Device, Tensor};

fn trained(formulation: Formulation) -> Trainer {
    let cfg = poet_core::config::TrainConfig {
        epochs: 2,
        ..tiny(formulation)
    };
    let (train, val) = texts();
    let mut t = Trainer::new(cfg, &train, &val, Device::Cpu).unwrap();
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    t
}

fn request(temperatures: Vec<f64>, seed: u64) -> SampleRequest {
    SampleRequest {
        temperatures,
        chars: 40,
        streams_per_temperature: 3,
        seed,
        prime: "the Ω".into(),
        mode: SampleMode::Carry,
        sampling: Sampling::off(),
    }
}

#[test]
fn same_seed_same_text_and_streams_in_job_order() {
    let _rng = torch_rng();
    let t = trained(Formulation::Seq);
    let req = request(vec![0.5, 1.0], 11);
    let a = sample(t.model(), t.vocab(), t.config(), &req).unwrap();
    let b = sample(t.model(), t.vocab(), t.config(), &req).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.iter().map(|s| s.temperature).collect::<Vec<_>>(),
        vec![0.5, 0.5, 0.5, 1.0, 1.0, 1.0]
    );
    assert!(a.iter().all(|s| s.text.chars().count() == 40));
    assert_ne!(
        a[0].text, a[1].text,
        "streams of one temperature draw independently"
    );
    let c = sample(
        t.model(),
        t.vocab(),
        t.config(),
        &request(vec![0.5, 1.0], 12),
    )
    .unwrap();
    assert_ne!(a, c);
}

/// Greedy carried-state sampling must pick, at every step, the argmax of a full forward pass
/// over seed + prime + everything sampled so far.
#[test]
fn zero_temperature_is_the_argmax_of_the_full_context() {
    let _rng = torch_rng();
    for formulation in [Formulation::Seq, Formulation::Keras] {
        let t = trained(formulation);
        let req = SampleRequest {
            chars: 12,
            ..request(vec![0.0], 3)
        };
        let out = sample(t.model(), t.vocab(), t.config(), &req).unwrap();
        assert!(
            out.windows(2).all(|w| w[0].text == w[1].text),
            "greedy streams agree"
        );
        let mut context = t
            .vocab()
            .encode_lossy(&seed_text(t.config().seq_len as usize))
            .0;
        assert_eq!(context.len(), 16);
        context.extend(t.vocab().encode_lossy("the ").0);
        for ch in out[0].text.chars() {
            let x = Tensor::from_slice(&context).view([1, -1]);
            let (h, _) = tch::no_grad(|| t.model().forward(&x, None, false));
            let logits = t.model().logits(&h.select(1, -1), false);
            let want = i64::try_from(logits.argmax(-1, false).squeeze()).unwrap();
            assert_eq!(t.vocab().char(want), ch, "{formulation:?}");
            context.push(want);
        }
    }
}

#[test]
fn window_mode_runs_and_is_deterministic() {
    let _rng = torch_rng();
    let t = trained(Formulation::Keras);
    let req = SampleRequest {
        chars: 10,
        mode: SampleMode::Window,
        ..request(vec![0.0, 0.7], 5)
    };
    let a = sample(t.model(), t.vocab(), t.config(), &req).unwrap();
    assert_eq!(a, sample(t.model(), t.vocab(), t.config(), &req).unwrap());
    assert_eq!(a[0].text.chars().count(), 10);
}

#[test]
fn negative_temperature_is_refused() {
    let _rng = torch_rng();
    let t = trained(Formulation::Seq);
    assert!(sample(t.model(), t.vocab(), t.config(), &request(vec![-1.0], 1)).is_err());
}

/// Many rows take the fused path; greedy rows must agree with the few-row (stepper) path.
#[test]
fn fused_and_stepper_paths_agree_greedily() {
    let _rng = torch_rng();
    let t = trained(Formulation::Seq);
    let few = SampleRequest {
        chars: 20,
        streams_per_temperature: 1,
        ..request(vec![0.0], 2)
    };
    let many = SampleRequest {
        streams_per_temperature: 12,
        ..few.clone()
    };
    let a = sample(t.model(), t.vocab(), t.config(), &few).unwrap();
    let b = sample(t.model(), t.vocab(), t.config(), &many).unwrap();
    assert!(b.iter().all(|s| s.text == a[0].text));
}

/// The shaped sampler (nucleus, top-k, repeat cap, newline pull) in both modes: the same seed,
/// checkpoint and settings give the same text; the settings change it; no line of a poem
/// stands more than twice.
#[test]
fn shaped_sampling_is_deterministic_and_caps_repeats() {
    let _rng = torch_rng();
    let t = trained(Formulation::Seq);
    let shaped = Sampling {
        top_p: 0.9,
        top_k: 8,
        max_line_repeats: 2,
        shape_boost: 4.0,
        ..Sampling::off()
    }
    .towards(6.0, 2.0);
    for mode in [SampleMode::Carry, SampleMode::Window] {
        let req = SampleRequest {
            chars: 300,
            mode,
            sampling: shaped.clone(),
            prime: String::new(),
            ..request(vec![0.0, 0.3, 1.0], 9)
        };
        let a = sample(t.model(), t.vocab(), t.config(), &req).unwrap();
        assert_eq!(
            a,
            sample(t.model(), t.vocab(), t.config(), &req).unwrap(),
            "{mode:?}"
        );
        let plain = SampleRequest {
            sampling: Sampling::off(),
            ..req.clone()
        };
        assert_ne!(a, sample(t.model(), t.vocab(), t.config(), &plain).unwrap());
        for s in &a {
            let poems = poet_worker::sample::split_poems(&s.text);
            let refs: Vec<&str> = poems.iter().map(String::as_str).collect();
            // The stream's last line may be cut by the char budget, not by a newline.
            let ended: Vec<&str> = refs
                .iter()
                .map(|p| p.rsplit_once('\n').map_or("", |(head, _)| head))
                .collect();
            assert_eq!(
                poet_core::quality::shape(&ended).repeated_lines,
                0,
                "{mode:?} {:?}",
                s.text
            );
        }
    }
}

#[test]
fn bad_sampling_settings_are_refused_by_name() {
    let _rng = torch_rng();
    let t = trained(Formulation::Seq);
    let req = SampleRequest {
        sampling: Sampling {
            top_p: 0.0,
            ..Sampling::default()
        },
        ..request(vec![0.5], 1)
    };
    let e = sample(t.model(), t.vocab(), t.config(), &req).unwrap_err();
    assert!(e.to_string().starts_with("top_p:"), "{e}");
}
