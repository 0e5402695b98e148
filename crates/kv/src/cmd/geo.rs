//! Geospatial commands: GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH, GEOSEARCHSTORE and the older
//! GEORADIUS family, on sorted sets as Redis keeps them.
//!
//! A point is a sorted-set member whose score is its 52-bit geohash: latitude and longitude are each
//! quantized to 26 bits over Redis's ranges (longitude ±180°, latitude ±85.05112878°, the Web-Mercator
//! limits) and their bits interleaved, longitude first. Nearby points get nearby scores, so an area
//! search reads a few score ranges: the geohash cell around the centre at a precision coarse enough
//! that it and its eight neighbours cover the search area, then keeps the points whose great-circle
//! distance (haversine on Redis's Earth radius) puts them inside the circle or box. Because the scores
//! are Redis's, ZRANGE on a geo key and GEOADD on a zset written by ZADD behave as they do there.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::{Frame, ProtocolVersion};

use super::CommandSpec;
use super::zsets::{self, Item, ZRead};
use crate::{Session, Shared};

macro_rules! spec {
    ($name:literal, $arity:expr, [$($flag:literal),*], $run:expr) => {
        CommandSpec { name: $name, arity: $arity, flags: &[$($flag),*], no_auth: false, run: $run }
    };
}

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("geoadd", -5, ["write", "denyoom"], geoadd),
    spec!("geodist", -4, ["readonly"], geodist),
    spec!("geohash", -2, ["readonly"], geohash),
    spec!("geopos", -2, ["readonly"], geopos),
    spec!("georadius", -6, ["write", "denyoom"], georadius),
    spec!("georadius_ro", -6, ["readonly"], georadius),
    spec!("georadiusbymember", -5, ["write", "denyoom"], georadius),
    spec!("georadiusbymember_ro", -5, ["readonly"], georadius),
    spec!("geosearch", -7, ["readonly"], geosearch),
    spec!("geosearchstore", -8, ["write", "denyoom"], geosearch),
];

// ---------------------------------------------------------------------------------------------------------
// Geohash arithmetic

const LON_MIN: f64 = -180.0;
const LON_MAX: f64 = 180.0;
const LAT_MIN: f64 = -85.051_128_78;
const LAT_MAX: f64 = 85.051_128_78;
/// Bits per coordinate in a stored score.
const STEP_MAX: u32 = 26;
/// The Earth radius Redis's distances use, in metres.
const EARTH_RADIUS_M: f64 = 6_372_797.560_856;
/// Half the Earth's circumference on the Web-Mercator projection, in metres.
const MERCATOR_MAX: f64 = 20_037_726.37;

/// Spreads the low 32 bits of `v` to the even bit positions of the result.
fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The inverse of [`spread`]: gathers the even bits of `x`.
fn squash(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    ((x | (x >> 16)) & 0x0000_0000_FFFF_FFFF) as u32
}

/// Coordinate ranges a geohash divides.
#[derive(Clone, Copy)]
struct Ranges {
    lon: (f64, f64),
    lat: (f64, f64),
}

/// Redis's ranges, for scores.
const MERCATOR: Ranges = Ranges {
    lon: (LON_MIN, LON_MAX),
    lat: (LAT_MIN, LAT_MAX),
};
/// The standard geohash ranges, for GEOHASH's strings.
const STANDARD: Ranges = Ranges {
    lon: (-180.0, 180.0),
    lat: (-90.0, 90.0),
};

/// The cell index of `v` within `range` split into 2^step cells.
fn cell_index(v: f64, range: (f64, f64), step: u32) -> u32 {
    let cells = 1u64 << step;
    let offset = (v - range.0) / (range.1 - range.0);
    ((offset * cells as f64) as u64).min(cells - 1) as u32
}

/// The cell indexes (longitude, latitude) of a point at `step` bits per coordinate.
fn cell_of(lon: f64, lat: f64, step: u32, r: Ranges) -> (u32, u32) {
    (cell_index(lon, r.lon, step), cell_index(lat, r.lat, step))
}

/// The interleaved hash of a cell: latitude bits at even positions, longitude bits at odd ones.
fn interleave(lon_i: u32, lat_i: u32) -> u64 {
    spread(lat_i) | (spread(lon_i) << 1)
}

/// `[min, max]` of cell `i` of `range` split into 2^step cells (`i` may lie one past either end, for
/// longitudes that wrap).
fn cell_bounds(i: i64, range: (f64, f64), step: u32) -> (f64, f64) {
    let width = (range.1 - range.0) / (1u64 << step) as f64;
    (range.0 + i as f64 * width, range.0 + (i + 1) as f64 * width)
}

/// The 52-bit score of a point.
fn encode(lon: f64, lat: f64) -> u64 {
    let (lon_i, lat_i) = cell_of(lon, lat, STEP_MAX, MERCATOR);
    interleave(lon_i, lat_i)
}

/// The centre of the cell a 52-bit score names, as (longitude, latitude); `None` for a score that is
/// not a geohash (negative, fractional, or past 52 bits).
fn decode(score: f64) -> Option<(f64, f64)> {
    if !(0.0..(1u64 << (2 * STEP_MAX)) as f64).contains(&score) || score.fract() != 0.0 {
        return None;
    }
    let bits = score as u64;
    let (lat_i, lon_i) = (squash(bits), squash(bits >> 1));
    let lon = cell_bounds(i64::from(lon_i), MERCATOR.lon, STEP_MAX);
    let lat = cell_bounds(i64::from(lat_i), MERCATOR.lat, STEP_MAX);
    Some((
        ((lon.0 + lon.1) / 2.0).clamp(LON_MIN, LON_MAX),
        ((lat.0 + lat.1) / 2.0).clamp(LAT_MIN, LAT_MAX),
    ))
}

/// Redis's `D_R`: one degree in radians.
const DEGREE_IN_RADIANS: f64 = std::f64::consts::PI / 180.0;

/// Radians in `degrees`, as Redis's `deg_rad` multiplies by `D_R` (not by PI then dividing by 180: the
/// roundings differ, and STOREDIST stores the distance to the last bit).
fn radians(degrees: f64) -> f64 {
    degrees * DEGREE_IN_RADIANS
}

/// Degrees per radian, as Redis's `rad_deg` divides by `D_R` (the grouping decides the last bits of a
/// STOREDIST distance).
fn degrees(radians: f64) -> f64 {
    radians / DEGREE_IN_RADIANS
}

/// Metres between two latitudes along a meridian.
fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (radians(lat2) - radians(lat1)).abs()
}

/// Great-circle metres between two points (the haversine formula).
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((radians(lon2) - radians(lon1)) / 2.0).sin();
    if v == 0.0 {
        // Same meridian: the latitude difference alone, without the trigonometry.
        return lat_distance(lat1, lat2);
    }
    let (lat1, lat2) = (radians(lat1), radians(lat2));
    let u = ((lat2 - lat1) / 2.0).sin();
    let a = u * u + lat1.cos() * lat2.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

// ---------------------------------------------------------------------------------------------------------
// Area search

/// What to search around a centre (sizes in metres).
#[derive(Clone, Copy)]
enum Shape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

impl Shape {
    /// Half the extent north-south and east-west, in metres.
    fn half_extents(self) -> (f64, f64) {
        match self {
            Shape::Radius(r) => (r, r),
            Shape::Box { width, height } => (height / 2.0, width / 2.0),
        }
    }

    /// The distance of a point from the centre when the point is inside the shape.
    fn contains(self, centre: (f64, f64), point: (f64, f64)) -> Option<f64> {
        match self {
            Shape::Radius(r) => {
                let d = distance(centre.0, centre.1, point.0, point.1);
                (d <= r).then_some(d)
            }
            Shape::Box { width, height } => {
                if lat_distance(point.1, centre.1) > height / 2.0 {
                    return None;
                }
                // East-west extent measured along the point's own parallel.
                if distance(point.0, point.1, centre.0, point.1) > width / 2.0 {
                    return None;
                }
                Some(distance(centre.0, centre.1, point.0, point.1))
            }
        }
    }
}

/// The longitude/latitude rectangle around the shape: `(min_lon, min_lat, max_lon, max_lat)`, with
/// longitudes unwrapped (they may pass ±180).
fn bounding_box(centre: (f64, f64), shape: Shape) -> (f64, f64, f64, f64) {
    let (north_south, east_west) = shape.half_extents();
    let lat_delta = degrees(north_south / EARTH_RADIUS_M);
    let widest = (centre.1.abs() + lat_delta).min(90.0);
    let lon_delta = if widest >= 90.0 {
        360.0
    } else {
        degrees(east_west / EARTH_RADIUS_M / radians(widest).cos()).min(360.0)
    };
    (
        centre.0 - lon_delta,
        centre.1 - lat_delta,
        centre.0 + lon_delta,
        centre.1 + lat_delta,
    )
}

/// The precision (bits per coordinate) at which a cell is about as large as the search radius: start
/// from the whole Mercator width and halve until the radius no longer fits, then back off a step (two
/// near the poles, where cells narrow).
fn estimate_step(radius_m: f64, lat: f64) -> u32 {
    if radius_m == 0.0 {
        return STEP_MAX;
    }
    let mut range = radius_m;
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if lat.abs() > 66.0 {
        step -= 1;
        if lat.abs() > 80.0 {
            step -= 1;
        }
    }
    step.clamp(1, STEP_MAX as i32) as u32
}

/// The score ranges `[min, max)` to read, in Redis's order: the centre cell, then north, south, east,
/// west, north-east, north-west, south-east, south-west (each once, and only those the area reaches).
fn search_ranges(centre: (f64, f64), shape: Shape) -> Vec<(f64, f64)> {
    let (min_lon, min_lat, max_lon, max_lat) = bounding_box(centre, shape);
    let (ns, ew) = shape.half_extents();
    let mut step = estimate_step(ns.max(ew), centre.1);
    // Coarsen until the centre cell and its neighbours cover the bounding box.
    let (lon_i, lat_i) = loop {
        let (lon_i, lat_i) = cell_of(centre.0, centre.1, step, MERCATOR);
        let cells = 1i64 << step;
        let (lon_i64, lat_i64) = (i64::from(lon_i), i64::from(lat_i));
        let south = lat_i64 == 0 || cell_bounds(lat_i64 - 1, MERCATOR.lat, step).0 <= min_lat;
        let north =
            lat_i64 == cells - 1 || cell_bounds(lat_i64 + 1, MERCATOR.lat, step).1 >= max_lat;
        let west = cell_bounds(lon_i64 - 1, MERCATOR.lon, step).0 <= min_lon;
        let east = cell_bounds(lon_i64 + 1, MERCATOR.lon, step).1 >= max_lon;
        if (south && north && west && east) || step == 1 {
            break (lon_i64, lat_i64);
        }
        step -= 1;
    };
    let cells = 1i64 << step;
    let lat_cell = cell_bounds(lat_i, MERCATOR.lat, step);
    let lon_cell = cell_bounds(lon_i, MERCATOR.lon, step);
    // A neighbour on a side the centre cell already covers holds nothing of the area.
    let skip_south = step >= 2 && lat_cell.0 < min_lat;
    let skip_north = step >= 2 && lat_cell.1 > max_lat;
    let skip_west = step >= 2 && lon_cell.0 < min_lon;
    let skip_east = step >= 2 && lon_cell.1 > max_lon;
    let shift = 2 * (STEP_MAX - step);
    let mut seen: Vec<u64> = Vec::with_capacity(9);
    let mut ranges = Vec::with_capacity(9);
    for (d_lat, d_lon) in [
        (0, 0),
        (1, 0),
        (-1, 0),
        (0, 1),
        (0, -1),
        (1, 1),
        (1, -1),
        (-1, 1),
        (-1, -1),
    ] {
        if (d_lat == -1 && skip_south)
            || (d_lat == 1 && skip_north)
            || (d_lon == -1 && skip_west)
            || (d_lon == 1 && skip_east)
        {
            continue;
        }
        let lat = lat_i + d_lat;
        if !(0..cells).contains(&lat) {
            continue;
        }
        let lon = (lon_i + d_lon).rem_euclid(cells);
        let hash = interleave(lon as u32, lat as u32);
        if seen.contains(&hash) {
            continue;
        }
        seen.push(hash);
        ranges.push(((hash << shift) as f64, ((hash + 1) << shift) as f64));
    }
    ranges
}

/// One point found by a search.
struct Found {
    member: Bytes,
    /// Metres from the centre.
    distance: f64,
    score: f64,
    lon: f64,
    lat: f64,
}

/// The points of `z` inside `shape` around `centre`, stopping at `limit` when given (COUNT ANY).
fn search(z: &ZRead<'_>, centre: (f64, f64), shape: Shape, limit: Option<usize>) -> Vec<Found> {
    let mut found = Vec::new();
    for (min, max) in search_ranges(centre, shape) {
        for Item { score, member } in z.in_range(min, max) {
            let Some((lon, lat)) = decode(score) else {
                continue;
            };
            if let Some(distance) = shape.contains(centre, (lon, lat)) {
                found.push(Found {
                    member,
                    distance,
                    score,
                    lon,
                    lat,
                });
                if limit.is_some_and(|n| found.len() >= n) {
                    return found;
                }
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------------------
// Replies and argument parsing

/// A coordinate as Redis prints it: 17 decimals, trailing zeros dropped (a double in RESP3).
fn coordinate(s: &Session, v: f64) -> Frame {
    if s.protocol == ProtocolVersion::Resp3 {
        return Frame::Double(v);
    }
    let text = format!("{v:.17}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

/// A distance as Redis prints it: four decimals, always a bulk string.
fn distance_frame(meters: f64, unit: f64) -> Frame {
    Frame::Bulk(Bytes::from(format!("{:.4}", meters / unit)))
}

fn parse_f64(arg: &[u8]) -> Option<f64> {
    zsets::parse_score(arg).filter(|v| v.is_finite())
}

/// A longitude and latitude within Redis's limits.
fn parse_lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), Frame> {
    let (Some(lon), Some(lat)) = (parse_f64(lon), parse_f64(lat)) else {
        return Err(Frame::error("ERR value is not a valid float"));
    };
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(Frame::error(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// Metres per unit.
fn parse_unit(arg: &[u8]) -> Result<f64, Frame> {
    match arg.to_ascii_lowercase().as_slice() {
        b"m" => Ok(1.0),
        b"km" => Ok(1000.0),
        b"ft" => Ok(0.3048),
        b"mi" => Ok(1609.34),
        _ => Err(Frame::error(
            "ERR unsupported unit provided. please use M, KM, FT, MI",
        )),
    }
}

/// `radius unit` as metres and the unit's metres.
fn parse_radius(radius: &[u8], unit: &[u8]) -> Result<(f64, f64), Frame> {
    let radius = parse_f64(radius).ok_or_else(|| Frame::error("ERR need numeric radius"))?;
    if radius < 0.0 {
        return Err(Frame::error("ERR radius cannot be negative"));
    }
    let unit = parse_unit(unit)?;
    Ok((radius * unit, unit))
}

// ---------------------------------------------------------------------------------------------------------
// Commands

/// GEOADD key [NX | XX] [CH] longitude latitude member [longitude latitude member ...]
pub fn geoadd(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (mut nx, mut xx, mut ch) = (false, false, false);
    let mut i = 2;
    while i < args.len() {
        match args[i].to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"ch" => ch = true,
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(3) || (nx && xx) {
        return Frame::error("ERR syntax error");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 3);
    for triple in rest.chunks_exact(3) {
        let (lon, lat) = match parse_lon_lat(&triple[0], &triple[1]) {
            Ok(p) => p,
            Err(e) => return e,
        };
        pairs.push((encode(lon, lat) as f64, triple[2].to_bytes()));
    }
    zsets::add_scores(s, sh, &args[1], (nx, xx, ch), &pairs)
}

/// GEOPOS key [member ...]: each member's position, or a null for a missing one.
pub fn geopos(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let result = zsets::read_zset(sh, s.db, &args[1], |z| {
        let mut out = Vec::with_capacity(args.len() - 2);
        for member in &args[2..] {
            let point = match z {
                Some(z) => z.score(member)?.and_then(decode),
                None => None,
            };
            out.push(match point {
                Some((lon, lat)) => Frame::Array(vec![coordinate(s, lon), coordinate(s, lat)]),
                None => Frame::NullArray,
            });
        }
        Ok(Frame::Array(out))
    });
    result.unwrap_or_else(|e| e)
}

/// GEODIST key member1 member2 [M | KM | FT | MI]
pub fn geodist(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let unit = match args.len() {
        4 => 1.0,
        5 => match parse_unit(&args[4]) {
            Ok(u) => u,
            Err(e) => return e,
        },
        _ => return Frame::error("ERR syntax error"),
    };
    let result = zsets::read_zset(sh, s.db, &args[1], |z| {
        let Some(z) = z else {
            return Ok(Frame::Null);
        };
        let a = z.score(&args[2])?.and_then(decode);
        let b = z.score(&args[3])?.and_then(decode);
        Ok(match (a, b) {
            (Some(a), Some(b)) => distance_frame(distance(a.0, a.1, b.0, b.1), unit),
            _ => Frame::Null,
        })
    });
    result.unwrap_or_else(|e| e)
}

/// The 11-character standard geohash of a point.
fn geohash_string(lon: f64, lat: f64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon_i, lat_i) = cell_of(lon, lat, STEP_MAX, STANDARD);
    let bits = interleave(lon_i, lat_i);
    (0..11)
        .map(|i| {
            // 52 bits make ten full characters; the eleventh carries no bits.
            let index = if i == 10 {
                0
            } else {
                ((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize
            };
            char::from(ALPHABET[index])
        })
        .collect()
}

/// GEOHASH key [member ...]: standard 11-character geohashes, or nulls for missing members.
pub fn geohash(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let result = zsets::read_zset(sh, s.db, &args[1], |z| {
        let mut out = Vec::with_capacity(args.len() - 2);
        for member in &args[2..] {
            let point = match z {
                Some(z) => z.score(member)?.and_then(decode),
                None => None,
            };
            out.push(match point {
                Some((lon, lat)) => Frame::Bulk(Bytes::from(geohash_string(lon, lat))),
                None => Frame::Null,
            });
        }
        Ok(Frame::Array(out))
    });
    result.unwrap_or_else(|e| e)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// Where a search is centred.
enum From {
    Point(f64, f64),
    Member(Bytes),
}

/// A parsed search request, whichever command it came from.
struct Request {
    src: Bytes,
    from: Option<From>,
    shape: Option<Shape>,
    /// Metres per unit of the request.
    unit: f64,
    with_dist: bool,
    with_hash: bool,
    with_coord: bool,
    sort: Sort,
    count: Option<usize>,
    any: bool,
    /// The key to store the result at, and whether to store distances rather than geohashes.
    store: Option<(Bytes, bool)>,
}

/// Parses GEORADIUS[_RO], GEORADIUSBYMEMBER[_RO], GEOSEARCH and GEOSEARCHSTORE.
fn parse_request(args: &[Arg]) -> Result<Request, Frame> {
    let name = args[0].to_ascii_lowercase();
    let search = name.starts_with(b"geosearch");
    let search_store = name == b"geosearchstore";
    let by_member = name.starts_with(b"georadiusbymember");
    let read_only = name.ends_with(b"_ro");
    let mut req = Request {
        src: args[if search_store { 2 } else { 1 }].to_bytes(),
        from: None,
        shape: None,
        unit: 1.0,
        with_dist: false,
        with_hash: false,
        with_coord: false,
        sort: Sort::None,
        count: None,
        any: false,
        store: search_store.then(|| (args[1].to_bytes(), false)),
    };
    let mut i = if search {
        if search_store { 3 } else { 2 }
    } else if by_member {
        req.from = Some(From::Member(args[2].to_bytes()));
        let (radius, unit) = parse_radius(&args[3], &args[4])?;
        req.shape = Some(Shape::Radius(radius));
        req.unit = unit;
        5
    } else {
        let (lon, lat) = parse_lon_lat(&args[2], &args[3])?;
        req.from = Some(From::Point(lon, lat));
        let (radius, unit) = parse_radius(&args[4], &args[5])?;
        req.shape = Some(Shape::Radius(radius));
        req.unit = unit;
        6
    };
    let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
        (false, false, false, false);
    while i < args.len() {
        let remaining = args.len() - i - 1;
        match args[i].to_ascii_lowercase().as_slice() {
            b"withdist" => req.with_dist = true,
            b"withhash" => req.with_hash = true,
            b"withcoord" => req.with_coord = true,
            b"any" => req.any = true,
            b"asc" => req.sort = Sort::Asc,
            b"desc" => req.sort = Sort::Desc,
            b"count" if remaining >= 1 => {
                let n = super::parse_i64(&args[i + 1])?;
                if n <= 0 {
                    return Err(Frame::error("ERR COUNT must be > 0"));
                }
                req.count = Some(usize::try_from(n).unwrap_or(usize::MAX));
                i += 1;
            }
            b"store" if remaining >= 1 && !search && !read_only => {
                req.store = Some((args[i + 1].to_bytes(), false));
                i += 1;
            }
            b"storedist" if remaining >= 1 && !search && !read_only => {
                req.store = Some((args[i + 1].to_bytes(), true));
                i += 1;
            }
            b"storedist" if search_store => {
                if let Some((_, dist)) = req.store.as_mut() {
                    *dist = true;
                }
            }
            b"frommember" if remaining >= 1 && search && !from_lonlat => {
                req.from = Some(From::Member(args[i + 1].to_bytes()));
                from_member = true;
                i += 1;
            }
            b"fromlonlat" if remaining >= 2 && search && !from_member => {
                let (lon, lat) = parse_lon_lat(&args[i + 1], &args[i + 2])?;
                req.from = Some(From::Point(lon, lat));
                from_lonlat = true;
                i += 2;
            }
            b"byradius" if remaining >= 2 && search && !by_box => {
                let (radius, unit) = parse_radius(&args[i + 1], &args[i + 2])?;
                req.shape = Some(Shape::Radius(radius));
                req.unit = unit;
                by_radius = true;
                i += 2;
            }
            b"bybox" if remaining >= 3 && search && !by_radius => {
                let width = parse_f64(&args[i + 1])
                    .ok_or_else(|| Frame::error("ERR need numeric width"))?;
                let height = parse_f64(&args[i + 2])
                    .ok_or_else(|| Frame::error("ERR need numeric height"))?;
                if width < 0.0 || height < 0.0 {
                    return Err(Frame::error("ERR height or width cannot be negative"));
                }
                let unit = parse_unit(&args[i + 3])?;
                req.shape = Some(Shape::Box {
                    width: width * unit,
                    height: height * unit,
                });
                req.unit = unit;
                by_box = true;
                i += 3;
            }
            _ => return Err(Frame::error("ERR syntax error")),
        }
        i += 1;
    }
    let command = String::from_utf8_lossy(&args[0]).into_owned();
    if req.store.is_some() && (req.with_dist || req.with_hash || req.with_coord) {
        let what = if search_store {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Frame::error(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    if search && !(from_member || from_lonlat) {
        return Err(Frame::error(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {command}"
        )));
    }
    if search && !(by_radius || by_box) {
        return Err(Frame::error(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {command}"
        )));
    }
    if req.any && req.count.is_none() {
        return Err(Frame::error("ERR the ANY argument requires COUNT argument"));
    }
    // COUNT picks the nearest ones unless ANY says any will do.
    if req.count.is_some() && req.sort == Sort::None && !req.any {
        req.sort = Sort::Asc;
    }
    Ok(req)
}

/// Runs a parsed search on the set (if any): the points found, sorted and cut to COUNT.
fn run_search(req: &Request, z: Option<&ZRead<'_>>) -> Result<Vec<Found>, Frame> {
    let Some(z) = z else {
        return Ok(Vec::new());
    };
    let centre = match &req.from {
        Some(From::Point(lon, lat)) => (*lon, *lat),
        Some(From::Member(m)) => match z.score(m)?.and_then(decode) {
            Some(p) => p,
            None => return Err(Frame::error("ERR could not decode requested zset member")),
        },
        None => return Ok(Vec::new()),
    };
    let Some(shape) = req.shape else {
        return Ok(Vec::new());
    };
    let limit = if req.any { req.count } else { None };
    let mut found = search(z, centre, shape, limit);
    match req.sort {
        Sort::Asc => found.sort_by(|a, b| a.distance.total_cmp(&b.distance)),
        Sort::Desc => found.sort_by(|a, b| b.distance.total_cmp(&a.distance)),
        Sort::None => {}
    }
    if let Some(n) = req.count {
        found.truncate(n);
    }
    Ok(found)
}

fn search_reply(s: &Session, req: &Request, found: Vec<Found>) -> Frame {
    let options = req.with_dist || req.with_hash || req.with_coord;
    Frame::Array(
        found
            .into_iter()
            .map(|f| {
                if !options {
                    return Frame::Bulk(f.member);
                }
                let mut item = vec![Frame::Bulk(f.member)];
                if req.with_dist {
                    item.push(distance_frame(f.distance, req.unit));
                }
                if req.with_hash {
                    item.push(Frame::Integer(f.score as i64));
                }
                if req.with_coord {
                    item.push(Frame::Array(vec![
                        coordinate(s, f.lon),
                        coordinate(s, f.lat),
                    ]));
                }
                Frame::Array(item)
            })
            .collect(),
    )
}

fn execute_search(s: &Session, sh: &Shared, req: &Request) -> Frame {
    if let Some((dst, store_dist)) = &req.store {
        let stored = zsets::read_zset_and_store(sh, s.db, &req.src, dst, |z| {
            Ok(run_search(req, z)?
                .into_iter()
                .map(|f| {
                    let score = if *store_dist {
                        f.distance / req.unit
                    } else {
                        f.score
                    };
                    (f.member, score)
                })
                .collect())
        });
        return stored.map_or_else(|e| e, Frame::Integer);
    }
    zsets::read_zset(sh, s.db, &req.src, |z| {
        Ok(search_reply(s, req, run_search(req, z)?))
    })
    .unwrap_or_else(|e| e)
}

/// GEORADIUS, GEORADIUS_RO, GEORADIUSBYMEMBER, GEORADIUSBYMEMBER_RO.
pub fn georadius(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match parse_request(args) {
        Ok(req) => execute_search(s, sh, &req),
        Err(e) => e,
    }
}

/// GEOSEARCH and GEOSEARCHSTORE.
pub fn geosearch(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match parse_request(args) {
        Ok(req) => execute_search(s, sh, &req),
        Err(e) => e,
    }
}

/// Where GEORADIUS and GEORADIUSBYMEMBER store their result, if they do (a key `key_positions`
/// reports beside the source).
pub(crate) fn store_position(args: &[Arg]) -> Option<usize> {
    let start = if args[0].eq_ignore_ascii_case(b"georadiusbymember") {
        5
    } else {
        6
    };
    let mut found = None;
    let mut i = start;
    while i + 1 < args.len() {
        let word = args[i].to_ascii_lowercase();
        match word.as_slice() {
            b"store" | b"storedist" => {
                found = Some(i + 1);
                i += 2;
            }
            b"count" => i += 2,
            _ => i += 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_and_squashing_are_inverse() {
        for v in [0u32, 1, 0x3ff_ffff, 0x155_5555, 12345] {
            assert_eq!(squash(spread(v)), v);
            assert_eq!(squash(spread(v) << 1 >> 1), v);
        }
    }

    #[test]
    fn a_point_survives_encoding_to_within_a_cell() {
        for (lon, lat) in [(13.361389, 38.115556), (-122.27652, 37.805186), (0.0, 0.0)] {
            let (dlon, dlat) = decode(encode(lon, lat) as f64).unwrap_or_default();
            assert!((dlon - lon).abs() < 1e-5 && (dlat - lat).abs() < 1e-5);
        }
        assert!(decode(-1.0).is_none());
        assert!(decode(1.5).is_none());
        assert!(decode((1u64 << 52) as f64).is_none());
    }

    #[test]
    fn distances_and_geohashes_match_the_reference_values() {
        // Palermo and Catania, the pair Redis's documentation uses.
        let d = distance(13.361389, 38.115556, 15.087269, 37.502669);
        assert!((d - 166_274.15).abs() < 1.0, "{d}");
        assert_eq!(geohash_string(13.361389, 38.115556), "sqc8b49rny0");
        assert_eq!(geohash_string(15.087269, 37.502669), "sqdtr74hyu0");
    }

    #[test]
    fn the_searched_cells_cover_the_area() {
        // Every point within the radius must fall in one of the ranges, wherever the centre is.
        let centres = [
            (0.0, 0.0),
            (179.9, 10.0),
            (-179.95, -40.0),
            (13.4, 84.9),
            (2.35, 48.85),
        ];
        for centre in centres {
            for radius in [10.0, 1_000.0, 200_000.0, 5_000_000.0] {
                let ranges = search_ranges(centre, Shape::Radius(radius));
                for k in 0..64 {
                    let bearing = f64::from(k) / 64.0 * std::f64::consts::TAU;
                    let frac = 0.999;
                    let dlat = degrees(radius * frac * bearing.cos() / EARTH_RADIUS_M);
                    let lat = (centre.1 + dlat).clamp(LAT_MIN, LAT_MAX);
                    let dlon = degrees(
                        radius * frac * bearing.sin() / EARTH_RADIUS_M / radians(lat).cos(),
                    );
                    let mut lon = centre.0 + dlon;
                    while lon > 180.0 {
                        lon -= 360.0;
                    }
                    while lon < -180.0 {
                        lon += 360.0;
                    }
                    let (plon, plat) = decode(encode(lon, lat) as f64).unwrap_or_default();
                    if distance(centre.0, centre.1, plon, plat) > radius {
                        continue;
                    }
                    let score = encode(lon, lat) as f64;
                    assert!(
                        ranges.iter().any(|&(lo, hi)| score >= lo && score < hi),
                        "centre {centre:?} radius {radius} point ({lon}, {lat})"
                    );
                }
            }
        }
    }
}
