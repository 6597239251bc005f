//! The crate's only `unsafe` code. In: a finalized `JITModule` and function ids from
//! `codegen`. Out: [`NativeFn`], a safe, shareable handle that checks its arguments before
//! calling into native code, and frees the module's code pages once no handle remains.

use std::sync::{Arc, Mutex};

use cranelift_jit::JITModule;
use cranelift_module::FuncId;

/// Most arrays one program may take; lets a call build its pointer table on the stack.
pub const MAX_ARRAYS: usize = 32;

type RawKernel = unsafe extern "C" fn(arrays: *const *mut f32, scalars: *const f32, n: usize);

/// Owns the code of one module. `Mutex` only makes it `Sync`; it is locked in `drop` alone.
struct CodeOwner {
    module: Mutex<Option<JITModule>>,
}

impl Drop for CodeOwner {
    fn drop(&mut self) {
        let slot = self.module.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(module) = slot.take() {
            free_module(module);
        }
    }
}

/// Frees the code pages of a module none of whose functions can be called any more.
#[allow(unsafe_code)]
pub(super) fn free_module(module: JITModule) {
    // # Safety
    // Callers pass either a module whose functions were never handed out (failed compile), or
    // the module of a `CodeOwner` being dropped: every `NativeFn` holds an `Arc` of its owner,
    // so when the owner drops no function pointer into this code is left.
    unsafe { module.free_memory() }
}

/// One compiled program: `arrays` base pointers, `scalars` values, over `n` elements.
#[derive(Clone)]
pub struct NativeFn {
    func: RawKernel,
    arrays: usize,
    scalars: usize,
    _owner: Arc<CodeOwner>,
}

/// Wraps the functions `ids` of `module`; `shapes[i]` is (arrays, scalars) of function `i`,
/// which `codegen` built to read exactly those.
#[allow(unsafe_code)]
pub(super) fn wrap_module(module: JITModule, ids: &[FuncId], shapes: &[(usize, usize)]) -> Vec<NativeFn> {
    let pointers: Vec<*const u8> = ids.iter().map(|id| module.get_finalized_function(*id)).collect();
    let owner = Arc::new(CodeOwner { module: Mutex::new(Some(module)) });
    let wrap = |(ptr, &(arrays, scalars)): (*const u8, &(usize, usize))| {
        // # Safety
        // `ptr` is a finalized function that `codegen` defined with signature
        // (pointer, pointer, pointer) and the host's default (C) calling convention, which is
        // `RawKernel`'s ABI; the code stays mapped while `_owner` lives.
        let func = unsafe { std::mem::transmute::<*const u8, RawKernel>(ptr) };
        NativeFn { func, arrays, scalars, _owner: owner.clone() }
    };
    pointers.into_iter().zip(shapes).map(wrap).collect()
}

impl NativeFn {
    /// Runs the function over all elements. Returns `false`, without running, if the number
    /// of arrays or scalars differs from the program's or the arrays differ in length.
    #[allow(unsafe_code)]
    pub fn call(&self, arrays: &mut [&mut [f32]], scalars: &[f32]) -> bool {
        let n = arrays.first().map_or(0, |a| a.len());
        let shape_ok = arrays.len() == self.arrays && scalars.len() == self.scalars;
        if !shape_ok || arrays.len() > MAX_ARRAYS || arrays.iter().any(|a| a.len() != n) {
            return false;
        }
        let mut table = [std::ptr::null_mut::<f32>(); MAX_ARRAYS];
        for (slot, a) in table.iter_mut().zip(arrays.iter_mut()) {
            *slot = a.as_mut_ptr();
        }
        // # Safety
        // The code reads `self.arrays` pointers from `table` and `self.scalars` floats from
        // `scalars` (both checked above), and touches elements `0..n` of each array only, all in
        // bounds since every array has length `n`. The arrays are distinct `&mut` slices, so
        // its writes alias nothing else; it keeps no pointer after returning.
        unsafe { (self.func)(table.as_ptr(), scalars.as_ptr(), n) };
        true
    }
}
