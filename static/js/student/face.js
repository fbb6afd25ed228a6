/* Face registration by webcam: the captured picture goes into the form's file input and the form is posted. */
(function () {
  "use strict";
  const form = document.getElementById("face-form");
  if (!form) return;
  const P = window.Proctor;
  const video = document.getElementById("face-video");
  const canvas = document.getElementById("face-canvas");
  const capture = document.getElementById("face-capture");
  const status = document.getElementById("face-camera-status");
  const input = document.getElementById("photo");

  P.openCamera(video, false).then(() => {
    status.textContent = "Camera ready (" + video.videoWidth + "×" + video.videoHeight + ").";
    capture.disabled = false;
  }).catch((e) => {
    status.textContent = "The camera is not available (" + (e.message || e.name) + "). Upload a photo instead.";
  });

  capture.addEventListener("click", () => {
    const shot = P.grab(video, canvas, 0.92);
    if (!shot) { status.textContent = "No picture from the camera yet."; return; }
    capture.disabled = true;
    status.textContent = "Checking the photo…";
    canvas.toBlob((blob) => {
      const file = new File([blob], "webcam.jpg", {type: "image/jpeg"});
      const dt = new DataTransfer();
      dt.items.add(file);
      input.files = dt.files;
      form.submit();
    }, "image/jpeg", 0.92);
  });
})();
