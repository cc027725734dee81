// web/save.js: hands things to the person: a file download from bytes or a Blob,
// and text on the clipboard.

/** Downloads data (a Blob, string or bytes) as a file called name. */
export function download(name, data, type = 'application/octet-stream') {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has started from the URL by now; a later revoke frees the Blob.
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Puts text on the clipboard; rejects with the browser's reason (no permission, no secure context). */
export async function copyText(text) {
  if (!navigator.clipboard?.writeText) throw new Error('this browser offers no clipboard here (it needs https or localhost)');
  await navigator.clipboard.writeText(text);
}

/** A file name part from free text: lower case, dashes, at most 60 characters. */
export const slug = (text) => String(text).toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-')
  .replace(/^-+|-+$/g, '').slice(0, 60).replace(/-+$/, '') || 'chart';
