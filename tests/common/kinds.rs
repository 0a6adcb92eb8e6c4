//! Small configs of every network kind, shared by the tests that train
//! each kind (CPU = GPU, resume = uninterrupted).

use ffwd::train::config::{RunConfig, Schedule};

/// The FF MLP of the kind tests: 500-300-200 on MNIST (threshold loss,
/// label concatenated, Adam 3e-3), 2 epochs of batch 100.
pub fn mnist_cfg() -> RunConfig {
    let mut c = RunConfig::default();
    c.data.dataset = "mnist".into();
    c.model.sizes = vec![500, 300, 200];
    c.model.loss = ffwd::layers::config::LossKind::Threshold;
    c.model.peer = None;
    c.train.lr_schedule = ffwd::train::config::LrSchedule::Constant;
    c.train.epochs = 2;
    c.train.batch = 100;
    c.train.seed = 11;
    c
}

/// The FF MLP with SymBa, SGD with momentum, layer by layer (1 epoch per layer).
pub fn mlp_symba_sgd_layer_by_layer() -> RunConfig {
    use ffwd::layers::config::{LossKind, OptimKind};
    let mut c = mnist_cfg();
    c.model.loss = LossKind::Symba;
    c.model.optim.kind = OptimKind::Sgd;
    c.model.optim.lr = 0.01;
    c.model.optim.momentum = 0.9;
    c.train.schedule = Schedule::LayerByLayer;
    c.train.epochs = 1;
    c
}

/// One config of every other network kind, for 2 epochs (1 per phase) on
/// a small MNIST subset (train, test).
pub fn other_kinds() -> Vec<(&'static str, RunConfig, (usize, usize))> {
    use ffwd::layers::config::{MlpTraining, PredictKind};
    use ffwd::layers::conv::{BlockNorm, ConvAlgorithm, ConvFfConfig};
    use ffwd::layers::uff::{CellKind, UffConfig};
    let mlp = |f: &dyn Fn(&mut RunConfig)| {
        let mut c = mnist_cfg();
        c.model.sizes = vec![200, 100];
        f(&mut c);
        c
    };
    let mut cases: Vec<(&str, RunConfig, (usize, usize))> = vec![
        ("FF MLP with readout", mlp(&|c| c.model.predict = PredictKind::Readout), (2000, 500)),
        ("FF MLP predicting by goodness and readout", mlp(&|c| c.model.predict = PredictKind::Ensemble), (2000, 500)),
        (
            "FF MLP with peer normalisation",
            mlp(&|c| c.model.peer = Some(ffwd::layers::config::PeerConfig::default())),
            (2000, 500),
        ),
        ("goodness-backprop MLP", mlp(&|c| c.model.training = MlpTraining::GoodnessBackprop), (2000, 500)),
        ("backprop MLP", mlp(&|c| c.model.training = MlpTraining::CrossEntropy), (2000, 500)),
        (
            "FF MLP with a linear probe",
            mlp(&|c| c.probe = Some(ffwd::layers::probe::ProbeConfig { epochs: 2, ..Default::default() })),
            (2000, 500),
        ),
    ];
    let conv = |f: &dyn Fn(&mut ConvFfConfig)| {
        let mut c = mnist_cfg();
        c.train.batch = 50;
        let mut k = ConvFfConfig::trifecta_small().narrowed(4);
        f(&mut k);
        c.conv = Some(k);
        c
    };
    cases.push(("Trifecta (SymBa, OLU, batch norm)", conv(&|_| {}), (500, 100)));
    cases.push((
        "vanilla conv FF",
        conv(&|k| {
            k.olu = false;
            k.norm = BlockNorm::Length;
            k.loss = ffwd::layers::config::LossKind::Threshold;
        }),
        (500, 100),
    ));
    cases.push(("backprop CNN", conv(&|k| k.algorithm = ConvAlgorithm::Backprop), (500, 100)));
    let mut ffcl = mnist_cfg();
    ffcl.ffcl = Some(ffwd::layers::ffcl::FfclConfig::default());
    cases.push(("FF contrastive twins", ffcl, (2000, 500)));
    for (cells, schedule) in [
        (vec![CellKind::Ae, CellKind::Ae], Schedule::Simultaneous),
        (vec![CellKind::Cae, CellKind::Dae, CellKind::Gan], Schedule::Simultaneous),
        (vec![CellKind::Dae, CellKind::Gan], Schedule::LayerByLayer),
    ] {
        let mut u = mnist_cfg();
        u.train.schedule = schedule;
        u.train.epochs = if schedule == Schedule::LayerByLayer { 1 } else { 2 };
        u.uff = Some(UffConfig { cells: cells.clone(), ..UffConfig::default() });
        let what: &'static str = Box::leak(format!("UFF {cells:?} {schedule:?}").into_boxed_str());
        cases.push((what, u, (1000, 200)));
    }
    cases
}
