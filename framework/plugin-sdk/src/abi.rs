//! The C ABI between a host and a strategy plugin: `#[repr(C)]` tables of `extern "C"`
//! functions and the plain values they pass (integers, flat `f32` buffers, UTF-8 JSON).
//!
//! # Rules of the boundary
//! * Nothing Rust-specific crosses: no trait objects, no `Vec`/`String` ownership, no
//!   tensors (DESIGN.md section 2).
//! * Inputs are borrowed ([`Slice`]) and valid only for the duration of the call.
//! * Outputs are [`OwnedBuffer`]s allocated by the callee; the caller copies them and hands
//!   them back to the callee's own `free_buffer`, so each side frees only what it allocated.
//! * Every function returns a [`Status`]. On [`STATUS_ERROR`] the `err` out-parameter holds a
//!   JSON-encoded error (see [`crate::wire`]); on [`STATUS_PANIC`] it holds the panic message
//!   as UTF-8 text. No panic ever unwinds across the boundary.
//!
//! # Versioning
//! [`PluginHeader`] is frozen: its layout never changes, so a host can always read the
//! header of any plugin and compare versions before it touches anything else.
//! [`ABI_VERSION`] covers the layout of everything after the header (the tables, the
//! structs below, the calling conventions); [`PROTOCOL_VERSION`] covers the meaning of the
//! calls and the JSON shapes that cross them.
use std::ffi::c_void;

/// Version of the binary layout of [`PluginVTable`], [`HostEnv`] and the types they use.
/// Bump it on any change to those layouts.
pub const ABI_VERSION: u32 = 1;

/// Version of the call protocol: call order, JSON shapes of every value that crosses as
/// JSON, error encoding. Bump it on any change that an old plugin would misread.
///
/// History: 1, the first protocol; 2 added the binary-gate drive [`DRIVE_GATED`] (its
/// active sets travel as JSON in [`DriveView::archs`]), which a protocol-1 plugin or host
/// would refuse as an unknown drive kind in the middle of a search; 3 added the
/// per-example selected drive [`DRIVE_SELECTED_PER_SAMPLE`] (GDAS with one hard sample per
/// example).
pub const PROTOCOL_VERSION: u32 = 3;

/// Name of the one symbol a plugin exports: `extern "C" fn() -> *const PluginVTable`.
pub const ENTRY_SYMBOL: &str = "nas_plugin_entry";

/// First field of every plugin header: the bytes `NASPLUGN`. A symbol named
/// [`ENTRY_SYMBOL`] whose table does not start with it is not a nas plugin.
pub const PLUGIN_MAGIC: u64 = u64::from_le_bytes(*b"NASPLUGN");

/// Signature of the entry point named [`ENTRY_SYMBOL`].
pub type EntryFn = unsafe extern "C" fn() -> *const PluginVTable;

/// Result code of every call across the boundary.
pub type Status = i32;
/// The call succeeded; its out-parameters are set.
pub const STATUS_OK: Status = 0;
/// The call failed; `err` holds a JSON-encoded error.
pub const STATUS_ERROR: Status = 1;
/// The callee panicked and caught it; `err` holds the panic message as UTF-8 text.
pub const STATUS_PANIC: Status = 2;

/// [`OwnedBuffer::kind`]: nothing allocated.
pub const BUFFER_EMPTY: u32 = 0;
/// [`OwnedBuffer::kind`]: bytes (UTF-8 JSON or text).
pub const BUFFER_BYTES: u32 = 1;
/// [`OwnedBuffer::kind`]: `f32` values.
pub const BUFFER_F32: u32 = 2;
/// [`OwnedBuffer::kind`]: `usize` values (shapes).
pub const BUFFER_USIZE: u32 = 3;

/// [`SearchStrategy::needs`](nas_core::SearchStrategy::needs): a supernet trainer.
pub const NEEDS_TRAINER: u32 = 0;
/// [`SearchStrategy::needs`](nas_core::SearchStrategy::needs): only an estimator.
pub const NEEDS_ESTIMATOR: u32 = 1;

/// [`HostEnv::spec`] role: the environment's space.
pub const ROLE_ENV: u32 = 0;
/// [`HostEnv::spec`] role: the trainer's space.
pub const ROLE_TRAINER: u32 = 1;
/// [`HostEnv::spec`] role: the estimator's space.
pub const ROLE_ESTIMATOR: u32 = 2;

/// [`DriveView::kind`]: shared mixing weights.
pub const DRIVE_MIXED: u32 = 0;
/// [`DriveView::kind`]: one set of mixing weights per example.
pub const DRIVE_MIXED_PER_SAMPLE: u32 = 1;
/// [`DriveView::kind`]: mixing weights, zero options skipped.
pub const DRIVE_SELECTED_ONLY: u32 = 2;
/// [`DriveView::kind`]: discrete paths (JSON in [`DriveView::archs`]).
pub const DRIVE_PATHS: u32 = 3;
/// [`DriveView::kind`]: binary gates (`nas_core::DriveKind::Gated`): the gate values in
/// [`DriveView::weights`], the active option sets as a JSON array of index arrays in
/// [`DriveView::archs`] (protocol 2).
pub const DRIVE_GATED: u32 = 4;
/// [`DriveView::kind`]: one set of selected-option weights per example
/// (`nas_core::DriveKind::SelectedPerSample`), laid out as [`DRIVE_MIXED_PER_SAMPLE`]'s
/// (protocol 3).
pub const DRIVE_SELECTED_PER_SAMPLE: u32 = 5;

/// Split code: training part of the search split.
pub const SPLIT_TRAIN: u32 = 0;
/// Split code: validation part of the search split.
pub const SPLIT_VALID: u32 = 1;
/// Split code: the test set.
pub const SPLIT_TEST: u32 = 2;
/// `max_batches` value meaning "the whole split".
pub const NO_BATCH_LIMIT: usize = usize::MAX;

/// [`GradOrderC::order`]: first-order gradient.
pub const ORDER_FIRST: u32 = 0;
/// [`GradOrderC::order`]: DARTS' unrolled second-order gradient.
pub const ORDER_SECOND: u32 = 1;

/// A borrowed slice: valid for the duration of one call, never freed by the receiver.
#[repr(C)]
pub struct Slice<T> {
    /// First element (may be null when `len` is 0).
    pub ptr: *const T,
    /// Number of elements.
    pub len: usize,
}

impl<T> Clone for Slice<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Slice<T> {}

impl<T> std::fmt::Debug for Slice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slice")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

/// Borrowed bytes (UTF-8 JSON or text).
pub type Bytes = Slice<u8>;
/// Borrowed `f32` values.
pub type Floats = Slice<f32>;
/// Borrowed `usize` values (shapes).
pub type Sizes = Slice<usize>;

impl<T> Slice<T> {
    /// The empty slice.
    pub const EMPTY: Self = Slice {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows `s` (usable in `const` and `static` initialisers).
    pub const fn new(s: &[T]) -> Self {
        Slice {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The borrowed elements.
    ///
    /// # Safety
    /// `ptr` must point to `len` initialised values that stay valid and unchanged for `'a`
    /// (or `len` must be 0).
    pub unsafe fn as_slice<'a>(self) -> &'a [T] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

impl Slice<u8> {
    /// Borrows the bytes of a string.
    pub const fn text(s: &str) -> Self {
        Slice::new(s.as_bytes())
    }
}

/// A buffer allocated by one side and handed to the other, which copies what it needs and
/// passes it back to the allocating side's `free_buffer` (see [`crate::buffer`]).
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBuffer {
    /// Start of the allocation (dangling or null when `len` is 0).
    pub ptr: *mut c_void,
    /// Number of elements of the kind below.
    pub len: usize,
    /// One of [`BUFFER_EMPTY`], [`BUFFER_BYTES`], [`BUFFER_F32`], [`BUFFER_USIZE`].
    pub kind: u32,
}

/// Frees an [`OwnedBuffer`] with the allocator of the side that made it.
pub type FreeFn = unsafe extern "C" fn(buffer: OwnedBuffer);

/// The frozen first part of every plugin table. Its layout never changes, whatever
/// [`ABI_VERSION`] says, so a host reads it before trusting anything else.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginHeader {
    /// Always [`PLUGIN_MAGIC`].
    pub magic: u64,
    /// The [`ABI_VERSION`] the plugin was built with.
    pub abi_version: u32,
    /// The [`PROTOCOL_VERSION`] the plugin was built with.
    pub protocol_version: u32,
    /// `size_of::<PluginVTable>()` as the plugin knows it.
    pub vtable_size: usize,
    /// Registered name of the strategy (static UTF-8).
    pub name: Bytes,
    /// Version of the plugin crate (static UTF-8).
    pub version: Bytes,
    /// Version of `nas-plugin-sdk` it was built against.
    pub sdk_version: Bytes,
    /// Version of `nas-core` it was built against.
    pub core_version: Bytes,
    /// `rustc --version` of the compiler that built it.
    pub rustc_version: Bytes,
}

/// The table a plugin's entry point returns. One instance of the strategy is an opaque
/// `handle` made by `create` and released by `destroy`.
///
/// Every function catches panics inside the plugin and reports them as [`STATUS_PANIC`].
/// `err` out-parameters must point to an [`OwnedBuffer`] initialised to empty; the host
/// frees whatever lands there with `free_buffer`.
#[repr(C)]
pub struct PluginVTable {
    /// Frozen header, checked before anything else is read.
    pub header: PluginHeader,
    /// Writes the declared [`crate::PluginInfo`] as JSON into `out`.
    pub info: unsafe extern "C" fn(out: *mut OwnedBuffer, err: *mut OwnedBuffer) -> Status,
    /// Decodes `params` (JSON; `null` = defaults) and makes a strategy instance.
    pub create: unsafe extern "C" fn(
        params: Bytes,
        handle: *mut *mut c_void,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Releases an instance made by `create`. Never fails (a panic is swallowed).
    pub destroy: unsafe extern "C" fn(handle: *mut c_void),
    /// Writes [`NEEDS_TRAINER`] or [`NEEDS_ESTIMATOR`] into `out`.
    pub needs:
        unsafe extern "C" fn(handle: *mut c_void, out: *mut u32, err: *mut OwnedBuffer) -> Status,
    /// `SearchStrategy::init` with the space spec as JSON.
    pub init: unsafe extern "C" fn(
        handle: *mut c_void,
        spec: Bytes,
        seed: u64,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// `SearchStrategy::step`; writes the step report as JSON.
    pub step: unsafe extern "C" fn(
        handle: *mut c_void,
        env: *const HostEnv,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// `SearchStrategy::end_epoch`; writes the epoch report as JSON.
    pub end_epoch: unsafe extern "C" fn(
        handle: *mut c_void,
        env: *const HostEnv,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// `SearchStrategy::outcome`; writes the search outcome as JSON.
    pub outcome: unsafe extern "C" fn(
        handle: *mut c_void,
        env: *const HostEnv,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// `SearchStrategy::mixing_weights`: `present` is 0 for `None`; otherwise `weights`
    /// holds the flat `f32` values and `shape` the option count of each decision.
    pub mixing_weights: unsafe extern "C" fn(
        handle: *mut c_void,
        present: *mut u32,
        weights: *mut OwnedBuffer,
        shape: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// `SearchStrategy::save_state`; writes the state as JSON.
    pub save_state: unsafe extern "C" fn(
        handle: *mut c_void,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// `SearchStrategy::load_state` from JSON.
    pub load_state:
        unsafe extern "C" fn(handle: *mut c_void, state: Bytes, err: *mut OwnedBuffer) -> Status,
    /// Frees a buffer the plugin allocated.
    pub free_buffer: FreeFn,
}

// SAFETY: the table holds function pointers and pointers to immutable static strings only.
unsafe impl Sync for PluginVTable {}
// SAFETY: as above.
unsafe impl Send for PluginVTable {}
// SAFETY: the header points to immutable static strings only.
unsafe impl Sync for PluginHeader {}
// SAFETY: as above.
unsafe impl Send for PluginHeader {}

/// A drive (see [`nas_core::Drive`]) as it crosses the boundary: mixing weights as one
/// flat `f32` buffer, discrete paths as JSON.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DriveView {
    /// [`DRIVE_MIXED`], [`DRIVE_MIXED_PER_SAMPLE`], [`DRIVE_SELECTED_ONLY`], [`DRIVE_PATHS`]
    /// or [`DRIVE_GATED`].
    pub kind: u32,
    /// 1 when `condition` is set.
    pub has_condition: u32,
    /// The conditioning scalar.
    pub condition: f32,
    /// Number of weight sets in `weights` (1, or the batch size for per-sample drives; 0
    /// for paths).
    pub samples: usize,
    /// `samples x sum(shape)` values, sample after sample, decision after decision.
    pub weights: Floats,
    /// Option count of each decision.
    pub shape: Sizes,
    /// For [`DRIVE_PATHS`]: a JSON array of architectures; for [`DRIVE_GATED`]: the active
    /// option sets, a JSON array of index arrays (one per decision).
    pub archs: Bytes,
}

/// A [`nas_core::GradOrder`] as it crosses the boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GradOrderC {
    /// [`ORDER_FIRST`] or [`ORDER_SECOND`].
    pub order: u32,
    /// 1 when `xi` is set (second order only).
    pub has_xi: u32,
    /// Virtual step size.
    pub xi: f64,
}

/// [`nas_core::StepStats`] as it crosses the boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStatsC {
    /// Training loss.
    pub loss: f64,
    /// Training accuracy.
    pub accuracy: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// [`nas_core::EvalStats`] as it crosses the boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalStatsC {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Examples seen.
    pub samples: usize,
}

/// The scalar part of a [`nas_core::ArchGradient`]; the gradients travel as a flat `f32`
/// buffer beside it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchGradC {
    /// Validation loss.
    pub loss: f64,
    /// Validation accuracy.
    pub accuracy: f64,
    /// Number of gradient sets in the flat buffer.
    pub samples: usize,
    /// 1 when `condition_grad` is set.
    pub has_condition_grad: u32,
    /// `dL/d condition`.
    pub condition_grad: f64,
}

/// The environment a host lends a plugin for one `step`, `end_epoch` or `outcome` call:
/// callbacks over an opaque context. Inside the plugin the SDK wraps it as a
/// [`nas_core::SearchEnv`] ([`crate::proxy::HostEnvProxy`]).
///
/// Every callback catches panics in the host and reports them as [`STATUS_PANIC`]. Buffers
/// the host returns are freed with `free_buffer`. Trainer callbacks fail when `has_trainer`
/// is 0, estimator callbacks when `has_estimator` is 0.
#[repr(C)]
pub struct HostEnv {
    /// `size_of::<HostEnv>()` as the host knows it.
    pub size: usize,
    /// Opaque host context passed to every callback.
    pub ctx: *mut c_void,
    /// The space spec of [`ROLE_ENV`], [`ROLE_TRAINER`] or [`ROLE_ESTIMATOR`], as JSON.
    pub spec: unsafe extern "C" fn(
        ctx: *mut c_void,
        role: u32,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// 1 when the run has a supernet trainer.
    pub has_trainer: unsafe extern "C" fn(ctx: *mut c_void) -> u32,
    /// 1 when the run has an estimator.
    pub has_estimator: unsafe extern "C" fn(ctx: *mut c_void) -> u32,
    /// Current epoch and total epochs.
    pub epoch: unsafe extern "C" fn(
        ctx: *mut c_void,
        epoch: *mut usize,
        total: *mut usize,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Derives an architecture (JSON into `out`) from flat mixing weights.
    pub derive: unsafe extern "C" fn(
        ctx: *mut c_void,
        weights: Floats,
        shape: Sizes,
        mode: Bytes,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Cost of an architecture (JSON in, JSON out).
    pub cost: unsafe extern "C" fn(
        ctx: *mut c_void,
        arch: Bytes,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// The space's text notation of an architecture (JSON in, UTF-8 text out).
    pub describe: unsafe extern "C" fn(
        ctx: *mut c_void,
        arch: Bytes,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Trainer: weight steps per epoch.
    pub steps_per_epoch:
        unsafe extern "C" fn(ctx: *mut c_void, out: *mut usize, err: *mut OwnedBuffer) -> Status,
    /// Trainer: examples per batch.
    pub batch_size:
        unsafe extern "C" fn(ctx: *mut c_void, out: *mut usize, err: *mut OwnedBuffer) -> Status,
    /// Trainer: current weight learning rate.
    pub weight_lr:
        unsafe extern "C" fn(ctx: *mut c_void, out: *mut f64, err: *mut OwnedBuffer) -> Status,
    /// Trainer: starts an epoch.
    pub begin_epoch:
        unsafe extern "C" fn(ctx: *mut c_void, epoch: usize, err: *mut OwnedBuffer) -> Status,
    /// Trainer: one weight step under a drive.
    pub train_weights: unsafe extern "C" fn(
        ctx: *mut c_void,
        drive: *const DriveView,
        out: *mut StepStatsC,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Trainer: loss and gradient with respect to the mixing weights. `grads` receives
    /// `out.samples x sum(shape)` values, `shape` the option count of each decision.
    pub arch_gradient: unsafe extern "C" fn(
        ctx: *mut c_void,
        drive: *const DriveView,
        order: GradOrderC,
        out: *mut ArchGradC,
        grads: *mut OwnedBuffer,
        shape: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Trainer: evaluates under a drive on a split ([`NO_BATCH_LIMIT`] = all of it).
    pub evaluate: unsafe extern "C" fn(
        ctx: *mut c_void,
        drive: *const DriveView,
        split: u32,
        max_batches: usize,
        out: *mut EvalStatsC,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Estimator: scores an architecture (JSON in, JSON out).
    pub estimate: unsafe extern "C" fn(
        ctx: *mut c_void,
        arch: Bytes,
        out: *mut OwnedBuffer,
        err: *mut OwnedBuffer,
    ) -> Status,
    /// Estimator: queries made so far.
    pub queries:
        unsafe extern "C" fn(ctx: *mut c_void, out: *mut u64, err: *mut OwnedBuffer) -> Status,
    /// Frees a buffer the host allocated.
    pub free_buffer: FreeFn,
}
