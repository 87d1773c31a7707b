"""The built-in components, registered through exactly the hooks a third-party plugin uses.

Only string references appear here, so registering imports nothing heavy (no torch).
"""

from __future__ import annotations

from voxuda.hookspecs import RegisterFn, hookimpl

_BACKBONES = [
    (
        "unet3d",
        "voxuda.backbones.unet3d:UNet3D",
        "voxuda.backbones.unet3d:UNet3DConfig",
        "3D U-Net with configurable widths and norm layers; taps at every encoder level",
    ),
    (
        "voxresnet",
        "voxuda.backbones.voxresnet:VoxResNet",
        "voxuda.backbones.voxresnet:VoxResNetConfig",
        "VoxResNet (Chen et al. 2018) with taps f_c, f_v2, f_v4, f_v6 as in the Vox-UDA figure",
    ),
]

_NOISE_MODELS = [
    (
        "none",
        "voxuda.noise.basic:NoNoise",
        "voxuda.noise.basic:NoNoiseConfig",
        "leave source volumes unchanged (ablation: no NGM)",
    ),
    (
        "gaussian",
        "voxuda.noise.basic:GaussianNoise",
        "voxuda.noise.basic:GaussianNoiseConfig",
        "white Gaussian noise of a fixed sigma or SNR",
    ),
    (
        "ngm",
        "voxuda.noise.ngm:NoiseGenerationModule",
        "voxuda.noise.ngm:NGMConfig",
        "Vox-UDA noise generation module: target noise variance from an FFT high-pass",
    ),
    (
        "spectral_ngm",
        "voxuda.noise.spectral:SpectralNoise",
        "voxuda.noise.spectral:SpectralNoiseConfig",
        "NGM variant: Gaussian noise shaped to the target's radial noise spectrum",
    ),
    (
        "skew_matched",
        "voxuda.noise.skew_matched:SkewMatchedNoise",
        "voxuda.noise.skew_matched:SkewMatchedNoiseConfig",
        "source-coloured noise whose variance matches the target's voxel skewness (fainter particles)",
    ),
]

_DENOISERS = [
    ("identity", "voxuda.denoisers.basic:Identity", "voxuda.denoisers.basic:IdentityConfig", "no denoising"),
    (
        "gaussian",
        "voxuda.denoisers.basic:GaussianDenoiser",
        "voxuda.denoisers.basic:GaussianDenoiserConfig",
        "separable 3D Gaussian smoothing",
    ),
    (
        "bilateral",
        "voxuda.denoisers.bilateral:BilateralDenoiser",
        "voxuda.denoisers.bilateral:BilateralDenoiserConfig",
        "classic 3D bilateral filter",
    ),
    (
        "improved_bilateral",
        "voxuda.denoisers.bilateral:ImprovedBilateralDenoiser",
        "voxuda.denoisers.bilateral:ImprovedBilateralDenoiserConfig",
        "Vox-UDA improved bilateral filter (range kernel on gradients of the Laplacian)",
    ),
]

_METHODS = [
    (
        "source_only",
        "voxuda.methods.source_only:SourceOnly",
        "voxuda.methods.source_only:SourceOnlyConfig",
        "supervised on labelled source only (the lower bound)",
    ),
    (
        "oracle",
        "voxuda.methods.oracle:Oracle",
        "voxuda.methods.oracle:OracleConfig",
        "supervised on target labels: an upper bound, never a UDA result",
    ),
    (
        "dann",
        "voxuda.methods.dann:DANN",
        "voxuda.methods.dann:DANNConfig",
        "domain-adversarial training with a gradient-reversal layer (Ganin and Lempitsky 2015)",
    ),
    (
        "mean_teacher",
        "voxuda.methods.mean_teacher:MeanTeacher",
        "voxuda.methods.mean_teacher:MeanTeacherConfig",
        "EMA-teacher self-training with confidence-thresholded pseudo-labels",
    ),
    (
        "vox_uda",
        "voxuda.methods.vox_uda:VoxUDA",
        "voxuda.methods.vox_uda:VoxUDAConfig",
        "Vox-UDA (Li et al., AAAI 2025): NGM + denoised pseudo-labels + consistency + adversarial",
    ),
]

_DATASETS = [
    (
        "mrc_folder",
        "voxuda.data.datasets:MRCSubtomogramDataset",
        "voxuda.data.datasets:MRCDatasetConfig",
        "a folder of MRC subtomograms with a CSV/JSON manifest",
    ),
]

_VALIDATORS = [
    (
        "source_val",
        "voxuda.engine.validators:SourceValidation",
        "voxuda.engine.validators:SourceValidationConfig",
        "Dice on held-out labelled source volumes (needs no target labels)",
    ),
    (
        "noisy_source_val",
        "voxuda.engine.validators:NoisySourceValidation",
        "voxuda.engine.validators:NoisySourceValidationConfig",
        "Dice on held-out labelled source volumes given the target's look by a label-free noise model",
    ),
    (
        "entropy",
        "voxuda.engine.validators:PredictionEntropy",
        "voxuda.engine.validators:PredictionEntropyConfig",
        "negative mean prediction entropy on target volumes (label-free)",
    ),
    (
        "agreement",
        "voxuda.engine.validators:DenoisedViewAgreement",
        "voxuda.engine.validators:DenoisedViewAgreementConfig",
        "agreement of predictions on raw and denoised target input (label-free)",
    ),
    (
        "target_prior",
        "voxuda.engine.validators:TargetPrior",
        "voxuda.engine.validators:TargetPriorConfig",
        "-|ln(predicted target foreground fraction / source prior)| (label-free, looks at the target)",
    ),
    (
        "target_agreement",
        "voxuda.engine.validators:TargetAgreement",
        "voxuda.engine.validators:TargetAgreementConfig",
        "agreement of target predictions with those of a flipped or denoised view (label-free)",
    ),
    (
        "target_combined",
        "voxuda.engine.validators:TargetCombined",
        "voxuda.engine.validators:TargetCombinedConfig",
        "weighted sum of target_prior, target_agreement and entropy terms (label-free)",
    ),
    (
        "target_oracle",
        "voxuda.engine.validators:TargetOracle",
        "voxuda.engine.validators:TargetOracleConfig",
        "Dice on labelled target validation volumes: leaks target labels, flagged in every table",
    ),
]

_ALIGNERS = [
    (
        "none",
        "voxuda.align.detrend:NoAlignment",
        "voxuda.align.detrend:NoAlignmentConfig",
        "no input alignment (the default)",
    ),
    (
        "detrend",
        "voxuda.align.detrend:Detrend",
        "voxuda.align.detrend:DetrendConfig",
        "remove each volume's least-squares intensity plane (or polynomial), then normalise again",
    ),
    (
        "spectrum_match",
        "voxuda.align.spectrum:SpectrumMatch",
        "voxuda.align.spectrum:SpectrumMatchConfig",
        "detrend, then give target volumes the source's mean radial amplitude spectrum (phases kept)",
    ),
]


def _register_all(register: RegisterFn, table: list[tuple[str, str, str, str]]) -> None:
    for name, factory, config, summary in table:
        register(name, factory=factory, config=config, summary=summary)


@hookimpl
def voxuda_register_backbones(register: RegisterFn) -> None:
    _register_all(register, _BACKBONES)


@hookimpl
def voxuda_register_noise_models(register: RegisterFn) -> None:
    _register_all(register, _NOISE_MODELS)


@hookimpl
def voxuda_register_denoisers(register: RegisterFn) -> None:
    _register_all(register, _DENOISERS)


@hookimpl
def voxuda_register_methods(register: RegisterFn) -> None:
    _register_all(register, _METHODS)


@hookimpl
def voxuda_register_ops(register: RegisterFn) -> None:
    register(
        "torch",
        factory="voxuda.ops.backends.torch_backend:TorchBackend",
        priority=10,
        probe="voxuda.ops.backends.torch_backend:probe",
        summary="reference bilateral backend: shift-and-accumulate in PyTorch (CPU or GPU)",
    )
    register(
        "numba",
        factory="voxuda.ops.backends.numba_backend:NumbaBackend",
        priority=50,
        probe="voxuda.ops.backends.numba_backend:probe",
        summary="compiled multi-threaded CPU bilateral backend (optional extra: voxuda[numba])",
    )
    register(
        "cupy",
        factory="voxuda.ops.backends.cupy_backend:CupyBackend",
        priority=100,
        probe="voxuda.ops.backends.cupy_backend:probe",
        summary="CUDA RawKernel bilateral backend through CuPy (needs a GPU)",
    )


@hookimpl
def voxuda_register_datasets(register: RegisterFn) -> None:
    _register_all(register, _DATASETS)


@hookimpl
def voxuda_register_validators(register: RegisterFn) -> None:
    _register_all(register, _VALIDATORS)


@hookimpl
def voxuda_register_aligners(register: RegisterFn) -> None:
    _register_all(register, _ALIGNERS)
