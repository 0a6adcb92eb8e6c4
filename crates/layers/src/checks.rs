//! The checks of a batch a network is handed: image sizes and labels.
//! Each error says what is wrong with the batch, by sample.

use crate::{Error, Result};

/// Check that `values` holds `n` images of `di` values.
pub(crate) fn check_images(values: usize, n: usize, di: usize) -> Result<()> {
    if values != n * di {
        return Err(Error::Batch(format!("{n} images of {di} values need {} values, got {values}", n * di)));
    }
    Ok(())
}

/// Check a labelled batch: `labels.len()` images of `di` values and labels
/// below `classes`.
pub(crate) fn check_labelled(values: usize, di: usize, labels: &[u8], classes: usize) -> Result<()> {
    check_images(values, labels.len(), di)?;
    if let Some(i) = labels.iter().position(|&y| y as usize >= classes) {
        return Err(Error::Batch(format!("sample {i}: label {} is not below the {classes} classes", labels[i])));
    }
    Ok(())
}

/// Check an FF training batch: a labelled batch and one negative label per
/// sample, each a class other than the sample's label.
pub(crate) fn check_batch(values: usize, di: usize, labels: &[u8], neg: &[u8], classes: usize) -> Result<()> {
    check_labelled(values, di, labels, classes)?;
    let n = labels.len();
    if neg.len() != n {
        return Err(Error::Batch(format!("{n} labels need {n} negative labels, got {}", neg.len())));
    }
    if let Some(i) = (0..n).find(|&i| neg[i] == labels[i] || neg[i] as usize >= classes) {
        return Err(Error::Batch(format!("sample {i}: negative label {} invalid for label {}", neg[i], labels[i])));
    }
    Ok(())
}
