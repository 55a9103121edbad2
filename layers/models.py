"""GeoAlchemy2 models: one per layer table, plus users, layer versions and registered rasters.

Geometries are stored in EPSG:4326 with a GiST index each. The schema itself is created only by the
Alembic migrations in ``layers/migrations``.
"""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer, Text, func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SRID = 4326


class Base(DeclarativeBase):
    pass


def geom(kind: str) -> Mapped:
    return mapped_column(Geometry(kind, srid=SRID, spatial_index=True), nullable=False)


class LayerMixin:
    """Columns every layer table has."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    synthetic: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    source: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DerivedMixin:
    """Columns every derived (analysis result) table has; see layers/derived.py."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_runs.id", ondelete="CASCADE"), index=True, nullable=False)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    synthetic: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class AnalysisRun(Base):
    __tablename__ = "analysis_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="running")
    input_versions: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default="{}")
    stats: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default="{}")


class AdminArea(LayerMixin, Base):
    __tablename__ = "admin_areas"
    adcode: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    level: Mapped[str | None] = mapped_column(Text)
    population: Mapped[int | None] = mapped_column(BigInteger)
    population_year: Mapped[int | None] = mapped_column(Integer)
    geom: Mapped[str] = geom("MULTIPOLYGON")


class ChemicalPark(LayerMixin, Base):
    __tablename__ = "chemical_parks"
    park_level: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    risk_grade: Mapped[str | None] = mapped_column(Text)
    adcode: Mapped[str | None] = mapped_column(Text)
    main_industry: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = geom("MULTIPOLYGON")


class Enterprise(LayerMixin, Base):
    __tablename__ = "enterprises"
    credit_code: Mapped[str | None] = mapped_column(Text)
    industry: Mapped[str | None] = mapped_column(Text)
    park_id: Mapped[int | None] = mapped_column(ForeignKey("chemical_parks.id", ondelete="SET NULL"))
    kind: Mapped[str | None] = mapped_column(Text)
    risk_grade: Mapped[str | None] = mapped_column(Text)
    adcode: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = geom("MULTIPOLYGON")


class HazardInstallation(LayerMixin, Base):
    __tablename__ = "hazard_installations"
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    unit_type: Mapped[str | None] = mapped_column(Text)
    level: Mapped[int | None] = mapped_column(Integer, CheckConstraint("level BETWEEN 1 AND 4"))
    geom: Mapped[str] = geom("MULTIPOLYGON")
    chemicals: Mapped[list[InstallationChemical]] = relationship(
        back_populates="installation", cascade="all, delete-orphan"
    )


class InstallationChemical(Base):
    """One row of a hazard installation's inventory (design maximum quantity, GB 18218 q)."""

    __tablename__ = "installation_chemicals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        ForeignKey("hazard_installations.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    cas: Mapped[str | None] = mapped_column(Text)
    un_number: Mapped[str | None] = mapped_column(Text)
    hazard_class: Mapped[str | None] = mapped_column(Text)
    quantity_t: Mapped[float] = mapped_column(Float, CheckConstraint("quantity_t >= 0"), nullable=False)
    installation: Mapped[HazardInstallation] = relationship(back_populates="chemicals")


class TailingsPond(LayerMixin, Base):
    __tablename__ = "tailings_ponds"
    mine: Mapped[str | None] = mapped_column(Text)
    dam_height_m: Mapped[float | None] = mapped_column(Float)
    capacity_10k_m3: Mapped[float | None] = mapped_column(Float)
    grade: Mapped[int | None] = mapped_column(Integer, CheckConstraint("grade BETWEEN 1 AND 5"))
    status: Mapped[str | None] = mapped_column(Text)
    adcode: Mapped[str | None] = mapped_column(Text)
    headtop: Mapped[bool | None] = mapped_column(Boolean)
    toe_lon: Mapped[float | None] = mapped_column(Float)
    toe_lat: Mapped[float | None] = mapped_column(Float)
    # written by the head-top analysis (gis/tailings.py; migration 0006)
    downstream_people: Mapped[int | None] = mapped_column(Integer)
    downstream_receptors: Mapped[int | None] = mapped_column(Integer)
    downstream_facilities: Mapped[int | None] = mapped_column(Integer)
    geom: Mapped[str] = geom("MULTIPOLYGON")


class Accident(LayerMixin, Base):
    __tablename__ = "accidents"
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    kind: Mapped[str | None] = mapped_column(Text)
    deaths: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    injuries: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    vehicles: Mapped[int | None] = mapped_column(Integer)
    hazmat: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    geom: Mapped[str] = geom("POINT")


class Road(LayerMixin, Base):
    __tablename__ = "roads"
    ref: Mapped[str | None] = mapped_column(Text)
    road_class: Mapped[str | None] = mapped_column(Text)
    speed_kmh: Mapped[float | None] = mapped_column(Float)
    oneway: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    bridge: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    tunnel: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    layer: Mapped[int | None] = mapped_column(Integer)
    length_m: Mapped[float | None] = mapped_column(Float)
    osm_id: Mapped[int | None] = mapped_column(BigInteger)
    geom: Mapped[str] = geom("LINESTRING")


class RestrictedStructure(LayerMixin, Base):
    __tablename__ = "restricted_structures"
    kind: Mapped[str | None] = mapped_column(Text)
    structure_class: Mapped[str | None] = mapped_column(Text)
    length_m: Mapped[float | None] = mapped_column(Float)
    adr_category: Mapped[str | None] = mapped_column(Text)
    road_ref: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = geom("LINESTRING")


class WaterSourceZone(LayerMixin, Base):
    __tablename__ = "water_source_zones"
    zone_level: Mapped[str | None] = mapped_column(Text)
    water_body: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = geom("MULTIPOLYGON")


class HazmatRoute(LayerMixin, Base):
    __tablename__ = "hazmat_routes"
    carrier: Mapped[str | None] = mapped_column(Text)
    cargo_un: Mapped[str | None] = mapped_column(Text)
    cargo_class: Mapped[str | None] = mapped_column(Text)
    quantity_t: Mapped[float | None] = mapped_column(Float)
    schedule: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = geom("LINESTRING")


class Receptor(LayerMixin, Base):
    __tablename__ = "receptors"
    kind: Mapped[str | None] = mapped_column(Text)
    protection_class: Mapped[str | None] = mapped_column(Text)
    people: Mapped[int | None] = mapped_column(Integer)
    adcode: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = geom("POINT")


class EmergencyResource(LayerMixin, Base):
    __tablename__ = "emergency_resources"
    kind: Mapped[str | None] = mapped_column(Text)
    capacity: Mapped[int | None] = mapped_column(Integer)
    contact_name: Mapped[str | None] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = geom("POINT")


class Raster(Base):
    """A registered GeoTIFF (population grid, DEM) that analyses find by name."""

    __tablename__ = "rasters"
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    title_zh: Mapped[str | None] = mapped_column(Text)
    title_en: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    crs: Mapped[str | None] = mapped_column(Text)
    units: Mapped[str | None] = mapped_column(Text)
    synthetic: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    source: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    role: Mapped[str] = mapped_column(Text, nullable=False)
    token_hash: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LayerVersion(Base):
    """Bumped by a trigger on every write to a layer table (tile cache key, staleness)."""

    __tablename__ = "layer_versions"
    layer: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
