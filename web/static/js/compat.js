/*
 * compat.js: shims so Leaflet.VectorGrid 1.3.0 works with Leaflet 1.9.4.
 * Load order: leaflet.js → Leaflet.VectorGrid.bundled.js → compat.js → onemap.js
 * The vendored files are not edited; both fixes are in this file.
 *
 * 1. L.DomEvent.fakeStop (removed in Leaflet 1.8)
 *    VectorGrid 1.3.0 (the last npm release) calls `L.DomEvent.fakeStop(e)` in
 *    L.Canvas.Tile#_onClick (vendor/leaflet.vectorgrid/Leaflet.VectorGrid.bundled.js,
 *    line 2482). The tile canvas sends click, dblclick, mousedown, mouseup and
 *    contextmenu there, so with the canvas renderer every press on a feature
 *    throws "L.DomEvent.fakeStop is not a function" and the feature's event
 *    never fires. (Leaflet.VectorGrid#274; fixed upstream by PR #288 after
 *    1.3.0, not released.)
 *
 *    In Leaflet ≤1.7, fakeStop(e) set a flag that Map#_handleDOMEvent read
 *    through `skipped(e)`, so the map did not handle the same DOM event again
 *    when it bubbled up from the canvas. Leaflet 1.8+ does the same thing
 *    another way: Canvas#_initContainer (which L.Canvas.Tile inherits) sets
 *    `_leaflet_disable_events = true` on the canvas, and Map#_handleDOMEvent
 *    ignores events whose target carries that flag. So a no-op is the faithful
 *    replacement. Upstream's fix calls `L.DomEvent.stop(e)` instead; we do not
 *    copy it, because it also stops the native mousedown from bubbling, and then
 *    a drag that starts on a feature no longer pans the map.
 *
 * 2. PointSymbolizer#getLatLng (breaks point events with Leaflet ≥1.5)
 *    Point features are drawn by VectorGrid's PointSymbolizer, a subclass of
 *    L.CircleMarker that has no latlng. Map#_fireDOMEvent treats any event target
 *    that has getLatLng() and a radius ≤ 10 as a marker and reads its latlng,
 *    so clicking or hovering a small point throws "Cannot read properties of
 *    undefined (reading 'lat')" with either renderer (Leaflet.VectorGrid#148,
 *    #267, #294). Upstream PR #157 (merged 2018, not released) removed
 *    getLatLng from PointSymbolizer. PointSymbolizer is not exported, so we reach
 *    its prototype through the first point symbolizer VectorGrid creates and set
 *    getLatLng to null there. Events then take their latlng from the mouse
 *    position, as for lines and polygons.
 *
 * Each shim does nothing when the library already behaves.
 */
(function (L) {
  'use strict';
  if (!L) { return; }

  if (L.DomEvent && typeof L.DomEvent.fakeStop !== 'function') {
    L.DomEvent.fakeStop = function () { return this; };
  }

  if (L.VectorGrid && L.VectorGrid.prototype && typeof L.VectorGrid.prototype._createLayer === 'function') {
    var createLayer = L.VectorGrid.prototype._createLayer;
    L.VectorGrid.prototype._createLayer = function (feat) {
      var layer = createLayer.apply(this, arguments);
      if (feat && feat.type === 1 && layer && typeof layer.getLatLng === 'function' && !layer._latlng) {
        Object.getPrototypeOf(layer).getLatLng = null; // PointSymbolizer.prototype, set once
      }
      return layer;
    };
  }
})(window.L);
